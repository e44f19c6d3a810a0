//go:build !amd64 || purego

package conflict

func classifyBlock(b *[64]byte, m *blockMasks) { classifyBlockSWAR(b, m) }
