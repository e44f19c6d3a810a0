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
