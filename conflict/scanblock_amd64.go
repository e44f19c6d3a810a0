//go:build !purego

package conflict

// useAVX2: classifyBlock has AVX2 (checked once); without it, the portable
// classification.
var useAVX2 = cpuAVX2()

func cpuAVX2() bool

//go:noescape
func classifyAVX2(b *[64]byte, m *blockMasks)

func classifyBlock(b *[64]byte, m *blockMasks) {
	if useAVX2 {
		classifyAVX2(b, m)
		return
	}
	classifyBlockSWAR(b, m)
}
