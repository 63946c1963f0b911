module goldenplugin

go 1.24

require collector v0.0.0

replace collector => ../..
