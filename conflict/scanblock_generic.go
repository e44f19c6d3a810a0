//go:build !amd64 || purego

package conflict

import "math"

// blockAfter: without assembly every container is read token by token,
// faster than by blocks classified in portable Go (skipBlocks). A variable
// for the tests, which set it to 0 to read every container by blocks.
var blockAfter = math.MaxInt

func classifyBlock(b *[64]byte, m *blockMasks) { classifyBlockSWAR(b, m) }

func classifyBlockNumbers(b *[64]byte, m *numberMasks) { classifyNumbersSWAR(b, m) }
