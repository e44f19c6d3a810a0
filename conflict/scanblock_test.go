package conflict

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestClassifyBlock: the classifications, SWAR and (on amd64) assembly,
// agree with the byte-by-byte definition, for every byte at every place of
// a block and for blocks of JSON's bytes mixed.
func TestClassifyBlock(t *testing.T) {
	var blocks [][64]byte
	for c := 0; c < 256; c++ {
		for at := 0; at < 64; at += 7 {
			var b [64]byte
			for i := range b {
				b[i] = byte(c + i*37) // every byte value at every place
			}
			b[at] = byte(c)
			blocks = append(blocks, b)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	const jsonBytes = "\"\\{}[]:, \t\n\r0123456789-+.eEtrufalsn\x00\x01\x1f\x7f\x80\xff /"
	for range 2000 {
		var b [64]byte
		for i := range b {
			b[i] = jsonBytes[r.IntN(len(jsonBytes))]
		}
		blocks = append(blocks, b)
	}
	for _, b := range blocks {
		var want, swar, got blockMasks
		classifyBytes(&b, &want)
		classifyBlockSWAR(&b, &swar)
		classifyBlock(&b, &got)
		if swar != want {
			t.Fatalf("classifyBlockSWAR(%q)\n= %+v\nwant %+v", b, swar, want)
		}
		if got != want {
			t.Fatalf("classifyBlock(%q)\n= %+v\nwant %+v", b, got, want)
		}
		var wantN, swarN, gotN numberMasks
		classifyNumberBytes(&b, &wantN)
		classifyNumbersSWAR(&b, &swarN)
		classifyBlockNumbers(&b, &gotN)
		if swarN != wantN || gotN != wantN {
			t.Fatalf("classifyNumbersSWAR(%q) = %+v\nclassifyBlockNumbers %+v\nwant %+v", b, swarN, gotN, wantN)
		}
	}
}

func BenchmarkClassify64KiB(b *testing.B) {
	doc := benchDoc(64 << 10)
	var m blockMasks
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		for i := 0; i+64 <= len(doc); i += 64 {
			classifyBlock((*[64]byte)(doc[i:i+64]), &m)
		}
	}
}

type blockSeed struct{ doc, ptr string }

// blockSeeds are documents for the corners of skipBlocks: strings, escapes,
// numbers and brackets across 64-byte blocks, deep nesting, control
// characters, documents of every length around a block's.
func blockSeeds() []blockSeed {
	var seeds []blockSeed
	add := func(doc, ptr string) { seeds = append(seeds, blockSeed{doc, ptr}) }
	for pad := 0; pad < 70; pad++ {
		p := strings.Repeat(" ", pad)
		s := strings.Repeat("s", pad)
		add(`{"a":[`+p+`"`+s+`x\"y",1],"v":1}`, "/v")
		add(`{"a":["`+s+`\\\\\\\\\\\"",1],"v":1}`, "/v")
		add(`{"a":["`+s+`\\\\\\\\\\"",1],"v":1}`, "/v")
		add(`{"a":["`+s+`\u00e9\ud83d\ude00",2],"v":1}`, "/v")
		add(`{"a":["`+s+`\u00zz"],"v":1}`, "/v")
		add(`{"a":["`+s+`\q"],"v":1}`, "/v")
		add(`{"a":[`+p+`12345678901234567890,-0.5e+7,0,true,false,null],"v":1}`, "/v")
		add(`{"a":[`+p+`012],"v":1}`, "/v")
		add(`{"a":[`+p+`1.],"v":1}`, "/v")
		add(`{"a":[`+p+`tru],"v":1}`, "/v")
		add(`{"a":[`+p+`1 2],"v":1}`, "/v")
		add(`{"a":{`+p+`"k"`+p+`:`+p+`{"x":[1,{}]}`+p+`,"y":[]},"v":1}`, "/v")
		add(`{"a":{`+p+`"k":1,}},"v":1}`, "/v")
		add(`{"a":{`+p+`"k" 1}},"v":1}`, "/v")
		add(`{"a":[`+p+`"x":1],"v":1}`, "/v")
		add(`{"a":[`+p+`{"x":1]],"v":1}`, "/v")
		add(`{"a":[`+p+"\"\x01\"],\"v\":1}", "/v")
		add(`{"a":[`+p+"\"\t\"],\"v\":1}", "/v")
		add(`{"a":[`+p+"\x01],\"v\":1}", "/v")
		add(`{"a":[`+p+"\xff],\"v\":1}", "/v")
		add(`{"a":[`+p+"\"\xff\xfe\"],\"v\":1}", "/v")
		add(`{"a":[`+p+`1,`+p+`]}`, "/a/0")
		add(`[`+p+`1`, "/0")
		add(`[[`+p+`1]`, "/0")
		add(`[`+p+`"x`, "/0")
		add(`[`+p+`[1],2]`, "/1")
		add(`[[`+p+`12]]`, "/0/0")
		add(`[`+p+`[12`, "/0")
	}
	scalars := []string{"-0", "-0.0e-0", "1E+2", "2.5E-7", "123.456e789", "0.5", "10", "0",
		"1e", "1.e2", ".5", "-", "--1", "1-", "1e+-2", "0x1", "00", "-01", "1.2.3", "1e2e3",
		"1e2.3", "+1", "1+", "1.5e", "1e+", "-a", "1x", "e5", "true", "tru", "truee", "nul",
		"null", "falsy", "false", "t", "nan"}
	for pad := 40; pad < 70; pad++ {
		p := strings.Repeat(" ", pad)
		for _, sc := range scalars {
			add(`{"a":[`+p+sc+`,1.5,-2,true],"v":1}`, "/v")
			add(`{"a":[`+p+`1.5,`+sc+`],"v":1}`, "/v")
		}
	}
	deep := func(n int, inner string) string { return strings.Repeat("[", n) + inner + strings.Repeat("]", n) }
	add(`{"a":`+deep(9998, "7")+`,"v":1}`, "/v")
	add(`{"a":`+deep(9999, "7")+`,"v":1}`, "/v")
	add(`{"a":`+deep(10000, "7")+`,"v":1}`, "/v")
	add(`[`+strings.Repeat(`{"a":[`, 3000)+strings.Repeat(`]}`, 3000)+`]`, "/1")
	add(`[`+strings.Repeat(`{"a":[`, 5000)+strings.Repeat(`]}`, 5000)+`]`, "/1")
	add(`[`+strings.Repeat(`{"a":[`, 3000)+strings.Repeat(`}]`, 3000)+`]`, "/1")
	return seeds
}

// TestLookupByBlocks: Lookup agrees with the reference on blockSeeds and
// mutations of them, with containers read by blocks and token by token.
func TestLookupByBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const jsonBytes = "\"\\{}[]:, \t\n\r0123456789-+.eEtrufalsn\x01\xff"
	for _, seed := range blockSeeds() {
		p, err := ParsePointer(seed.ptr)
		if err != nil {
			t.Fatal(err)
		}
		doc := []byte(seed.doc)
		agree(t, doc, p)
		agreeByBlocks(t, doc, p)
		if len(doc) > 1000 {
			continue
		}
		for range 20 {
			m := bytes.Clone(doc)
			for range 1 + r.IntN(3) {
				m[r.IntN(len(m))] = jsonBytes[r.IntN(len(jsonBytes))]
			}
			agree(t, m, p)
			agreeByBlocks(t, m, p)
		}
	}
	// benchDoc cut at every length around the end: numbers at the end.
	doc := benchDoc(1 << 10)
	for n := len(doc) - 80; n <= len(doc); n++ {
		agreeByBlocks(t, doc[:n], Pointer{"version"})
		agreeByBlocks(t, append(bytes.Clone(doc[:n]), '7'), Pointer{"items", "0", "n"})
	}
}

// BenchmarkLookupShapes: documents of other shapes than benchDoc, the
// version field last.
func BenchmarkLookupShapes(b *testing.B) {
	repeat := func(elem string) []byte {
		var s strings.Builder
		s.WriteString(`{"items":[`)
		for i := 0; s.Len() < 64<<10; i++ {
			if i > 0 {
				s.WriteByte(',')
			}
			s.WriteString(elem)
		}
		s.WriteString(`],"version":42}`)
		return []byte(s.String())
	}
	shapes := []struct {
		name string
		doc  []byte
	}{
		{"numbers", repeat(`12345`)},
		{"floats", repeat(`-1.25e3`)},
		{"strings", repeat(`"a longer string value, with words"`)},
		{"escapes", repeat(`"line\nbreak \"quoted\" \u00e9"`)},
		{"literals", repeat(`true,null`)},
		{"nested", repeat(`{"a":[1,{"b":[2,3]}],"c":{"d":{}}}`)},
		{"indented", repeat("{\n    \"name\": \"item\",\n    \"n\": 12345\n  }")},
	}
	for _, sh := range shapes {
		b.Run(sh.name, func(b *testing.B) {
			b.SetBytes(int64(len(sh.doc)))
			var buf [64]byte
			for b.Loop() {
				if v, err := AppendLookup(buf[:0], sh.doc, Pointer{"version"}); err != nil || string(v) != "42" {
					b.Fatal(string(v), err)
				}
			}
		})
	}
}

// randomJSON writes a random JSON value of about n bytes to b: nested
// containers, white space, strings with escapes, numbers of every form.
func randomJSON(r *rand.Rand, b *strings.Builder, n, depth int) {
	space := func() {
		for r.IntN(4) == 0 {
			b.WriteByte(" \t\n\r"[r.IntN(4)])
		}
	}
	scalars := []string{`0`, `-0`, `12`, `-3.25`, `1e5`, `2.5E-07`, `-0.0e+1`, `123456789`,
		`true`, `false`, `null`, `""`, `"a"`, `"\\"`, `"\""`, `"\\\""`, `"\u00e9x"`, `"\ud83d\ude00"`,
		`"\/\b\f\n\r\t"`, "\"\xff\xfe\"", `"long string, with {brackets} and [more] : and ,"`}
	if depth > 8 || n < 8 || r.IntN(4) == 0 {
		b.WriteString(scalars[r.IntN(len(scalars))])
		return
	}
	object := r.IntN(2) == 0
	if object {
		b.WriteByte('{')
	} else {
		b.WriteByte('[')
	}
	k := r.IntN(6)
	for i := 0; i < k; i++ {
		if i > 0 {
			space()
			b.WriteByte(',')
		}
		space()
		if object {
			b.WriteString([]string{`"k"`, `"v"`, `"\u006b"`, `""`, `"a\"b"`}[r.IntN(5)])
			space()
			b.WriteByte(':')
			space()
		}
		randomJSON(r, b, n/k, depth+1)
		space()
	}
	if object {
		b.WriteByte('}')
	} else {
		b.WriteByte(']')
	}
}

// TestLookupByBlocksRandom: random documents of a few blocks and mutations
// of them, read by blocks and token by token, agree with the reference.
func TestLookupByBlocksRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const jsonBytes = "\"\\{}[]:, \t\n0123456789-+.eEtrufalsn\x01\xff"
	for range 3000 {
		var b strings.Builder
		b.WriteString(`{"a":`)
		randomJSON(r, &b, 64+r.IntN(2000), 0)
		b.WriteString(`,"v":1}`)
		doc := []byte(b.String())
		for k := range 4 {
			m := bytes.Clone(doc)
			for range k {
				m[r.IntN(len(m))] = jsonBytes[r.IntN(len(jsonBytes))]
			}
			agree(t, m, Pointer{"v"})
			agreeByBlocks(t, m, Pointer{"v"})
		}
	}
}

// classifyBytes is the byte-by-byte definition of blockMasks, which
// classifyBlock computes faster.
func classifyBytes(b *[64]byte, m *blockMasks) {
	*m = blockMasks{}
	for i, c := range b {
		bit := uint64(1) << i
		set := func(mask *uint64, ok bool) {
			if ok {
				*mask |= bit
			}
		}
		ws := c == ' ' || c == '\t' || c == '\n' || c == '\r'
		set(&m.quote, c == '"')
		set(&m.backslash, c == '\\')
		set(&m.ctrl, c < 0x20)
		set(&m.space, ws)
		set(&m.open, c == '{' || c == '[')
		set(&m.close, c == '}' || c == ']')
		set(&m.curly, c&0x20 != 0)
		set(&m.colon, c == ':')
		set(&m.comma, c == ',')
		set(&m.zero, c == '0')
		set(&m.digit, '0' <= c && c <= '9')
	}
}

// classifyNumberBytes is the byte-by-byte definition of numberMasks.
func classifyNumberBytes(b *[64]byte, m *numberMasks) {
	*m = numberMasks{}
	for i, c := range b {
		bit := uint64(1) << i
		switch c {
		case '-':
			m.minus |= bit
		case '+':
			m.plus |= bit
		case '.':
			m.dot |= bit
		case 'e', 'E':
			m.exp |= bit
		}
	}
}
