package collector

import (
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenDir is plugin-sdk/golden, or $COLLECTOR_GOLDEN_DIR.
func goldenDir() string {
	if d := os.Getenv("COLLECTOR_GOLDEN_DIR"); d != "" {
		return d
	}
	return "../golden"
}

func decodeAll(buf []byte) ([]string, error) {
	b, err := NewBatch(buf)
	if err != nil {
		return nil, err
	}
	var lines []string
	r := b.Reader()
	for r.Next() {
		lines = append(lines, string(AppendJSON(nil, r.Sample())))
	}
	return lines, r.Err()
}

// Every golden vector decodes whole to the samples of its .json (the JSON
// lines go to $GO_SDK_JSONL_DIR for golden/compare.py, which compares number
// types too); every strict prefix fails; corruptions never panic.
func TestGoldenVectors(t *testing.T) {
	bins, _ := filepath.Glob(filepath.Join(goldenDir(), "*.bin"))
	if len(bins) == 0 {
		t.Fatalf("no golden vectors in %s", goldenDir())
	}
	out := os.Getenv("GO_SDK_JSONL_DIR")
	for _, bin := range bins {
		name := strings.TrimSuffix(filepath.Base(bin), ".bin")
		buf, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := decodeAll(buf)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var expected []map[string]any
		js, _ := os.ReadFile(strings.TrimSuffix(bin, ".bin") + ".json")
		if err := json.Unmarshal(js, &expected); err != nil {
			t.Fatalf("%s.json: %v", name, err)
		}
		if len(lines) != len(expected) {
			t.Fatalf("%s: %d samples decoded, %d expected", name, len(lines), len(expected))
		}
		for i, l := range lines {
			var got map[string]any
			if err := json.Unmarshal([]byte(l), &got); err != nil {
				t.Fatalf("%s[%d]: our JSON does not parse: %v\n%s", name, i, err, l)
			}
			if len(got) != len(expected[i]) {
				t.Fatalf("%s[%d]: %d keys, %d expected", name, i, len(got), len(expected[i]))
			}
		}
		if out != "" {
			text := strings.Join(lines, "\n")
			if len(lines) > 0 {
				text += "\n"
			}
			if err := os.WriteFile(filepath.Join(out, name+".jsonl"), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for cut := 0; cut < len(buf); cut++ {
			if _, err := decodeAll(buf[:cut]); err == nil {
				t.Fatalf("%s: the prefix of %d bytes decoded", name, cut)
			}
		}
		rng := rand.New(rand.NewSource(int64(len(buf))))
		for i := 0; i < 2000; i++ {
			bad := append([]byte(nil), buf...)
			for j := 0; j < 1+rng.Intn(4); j++ {
				bad[rng.Intn(len(bad))] = byte(rng.Intn(256))
			}
			_, _ = decodeAll(bad)
		}
	}
}

func TestFloatsAreWrittenAsPythonReadsThem(t *testing.T) {
	tenth := 0.1
	cases := []struct {
		f    float64
		want string
	}{
		{512, "512.0"}, {tenth + 0.2, "0.30000000000000004"}, {1e-05, "1e-05"},
		{1e16, "1e+16"}, {209.767, "209.767"}, {math.NaN(), "NaN"}, {math.Inf(-1), "-Infinity"},
		{1234567.0, "1234567.0"}, {1e15, "1000000000000000.0"}, {0.0001, "0.0001"}, {1.5e-7, "1.5e-07"},
		{-2.5e300, "-2.5e+300"},
	}
	for _, c := range cases {
		if got := string(AppendFloat(nil, c.f)); got != c.want {
			t.Errorf("%v: %s, want %s", c.f, got, c.want)
		}
	}
	if got := string(AppendFloat(nil, math.Copysign(0, -1))); got != "-0.0" {
		t.Errorf("-0.0: %s", got)
	}
}

func TestStringsAreEscapedAsTheABISays(t *testing.T) {
	got := string(AppendString(nil, "a\"\\\n\r\t\x01\x7fé"))
	if want := `"a\"\\\n\r\t\u0001\u007fé"`; got != want {
		t.Errorf("%s, want %s", got, want)
	}
}

func TestDeeperThanTheLimitIsRefused(t *testing.T) {
	// Value nesting one level past MaxDepth in resource_metadata.
	buf, err := os.ReadFile(filepath.Join(goldenDir(), "005-deepest.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeAll(buf); err != nil {
		t.Fatalf("the deepest sample must decode: %v", err)
	}
	c := cursor{b: deepList(MaxDepth + 1)}
	if err := c.skipValue(0); err == nil {
		t.Fatal("64 levels decoded")
	}
	c = cursor{b: deepList(MaxDepth)}
	if err := c.skipValue(0); err != nil {
		t.Fatalf("63 levels refused: %v", err)
	}
}

func deepList(levels int) []byte {
	var b []byte
	for i := 0; i < levels; i++ {
		b = append(b, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0)
	}
	return append(b, 0, 0, 0, 0)
}

func TestRequestEncoding(t *testing.T) {
	r := Request{Endpoint: "e", Method: "POST", Target: "/w", Headers: [][2]string{{"A", "b"}}, Body: []byte("x")}
	want := "\x01\x00\x00\x00e\x04\x00\x00\x00POST\x02\x00\x00\x00/w\x01\x00\x00\x00\x01\x00\x00\x00A\x01\x00\x00\x00b\x01\x00\x00\x00x"
	if got := string(r.Encode()); got != want {
		t.Errorf("%q", got)
	}
}
