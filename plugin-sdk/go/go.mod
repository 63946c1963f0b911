module collector

go 1.24
