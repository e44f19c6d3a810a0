//go:build !purego

package conflict

import "math"

// useAVX2: classifyBlock has AVX2 (checked once); without it, the portable
// classification.
var useAVX2 = cpuAVX2()

// blockAfter is how far into a container skipContainer reads token by
// token before it goes on by blocks (skipBlocks): small containers are
// read faster token by token, and without AVX2 all of them (the portable
// classification is slower than reading token by token). A variable for
// the tests, which set it to 0 to read every container by blocks.
var blockAfter = blockAfterIf(useAVX2)

func blockAfterIf(avx2 bool) int {
	if avx2 {
		return 256
	}
	return math.MaxInt
}

func cpuAVX2() bool

//go:noescape
func classifyAVX2(b *[64]byte, m *blockMasks)

//go:noescape
func classifyNumbersAVX2(b *[64]byte, m *numberMasks)

func classifyBlockNumbers(b *[64]byte, m *numberMasks) {
	if useAVX2 {
		classifyNumbersAVX2(b, m)
		return
	}
	classifyNumbersSWAR(b, m)
}

func classifyBlock(b *[64]byte, m *blockMasks) {
	if useAVX2 {
		classifyAVX2(b, m)
		return
	}
	classifyBlockSWAR(b, m)
}
