//go:build !purego

#include "textflag.h"

// The bytes classifyAVX2 compares with, broadcast to every byte of a
// register, then a table for VPSHUFB: by its low 4 bits, the one white
// space byte (RFC 8259 section 2) a byte can equal, or a byte it cannot.
DATA classBytes<>+0(SB)/8, $0x09302C3A7D7B1F5C // \ 0x1F { } : , 0 9
DATA classBytes<>+8(SB)/1, $0x22               // "
DATA classBytes<>+16(SB)/8, $0xFFFFFFFFFFFFFF20 // 0x20 for index 0
DATA classBytes<>+24(SB)/8, $0x00FF0DFFFF0A09FF // 0x09 (9), 0x0A (10), 0x0D (13); 0x00 for 15
GLOBL classBytes<>(SB), RODATA|NOPTR, $32

// func classifyAVX2(b *[64]byte, m *blockMasks)
// Each mask is the VPMOVMSKB of a byte-wise comparison, for the two halves
// of the block; the fields of m are in blockMasks' order, 8 bytes each.
TEXT ·classifyAVX2(SB), NOSPLIT, $0-16
	MOVQ b+0(FP), SI
	MOVQ m+8(FP), DI
	VPBROADCASTB classBytes<>+8(SB), Y6  // "
	VPBROADCASTB classBytes<>+0(SB), Y7  // \
	VPBROADCASTB classBytes<>+1(SB), Y8  // 0x1F
	VPBROADCASTB classBytes<>+16(SB), Y9 // 0x20
	VPBROADCASTB classBytes<>+2(SB), Y10 // {
	VPBROADCASTB classBytes<>+3(SB), Y11 // }
	VPBROADCASTB classBytes<>+4(SB), Y12 // :
	VPBROADCASTB classBytes<>+5(SB), Y13 // ,
	VPBROADCASTB classBytes<>+6(SB), Y14 // 0
	VPBROADCASTB classBytes<>+7(SB), Y15 // 9
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1

// MASK stores in m at off the 64 bits of the two halves in Y2 and Y3.
#define MASK(off) \
	VPMOVMSKB Y2, AX \
	VPMOVMSKB Y3, BX \
	SHLQ      $32, BX \
	ORQ       BX, AX \
	MOVQ      AX, off(DI)

	VPCMPEQB Y0, Y6, Y2 // quote
	VPCMPEQB Y1, Y6, Y3
	MASK(0)
	VPCMPEQB Y0, Y7, Y2 // backslash
	VPCMPEQB Y1, Y7, Y3
	MASK(8)
	VPMINUB  Y0, Y8, Y2 // ctrl: min(x, 0x1F) == x
	VPMINUB  Y1, Y8, Y3
	VPCMPEQB Y0, Y2, Y2
	VPCMPEQB Y1, Y3, Y3
	MASK(16)
	VBROADCASTI128 classBytes<>+16(SB), Y4 // space: the table's byte == x
	VPSHUFB  Y0, Y4, Y2
	VPSHUFB  Y1, Y4, Y3
	VPCMPEQB Y0, Y2, Y2
	VPCMPEQB Y1, Y3, Y3
	MASK(24)
	VPOR     Y0, Y9, Y4 // open: x|0x20 == {, close: x|0x20 == }
	VPOR     Y1, Y9, Y5
	VPCMPEQB Y4, Y10, Y2
	VPCMPEQB Y5, Y10, Y3
	MASK(32)
	VPCMPEQB Y4, Y11, Y2
	VPCMPEQB Y5, Y11, Y3
	MASK(40)
	VPSLLW   $2, Y0, Y2 // curly: bit 5 of x
	VPSLLW   $2, Y1, Y3
	MASK(48)
	VPCMPEQB Y0, Y12, Y2 // colon
	VPCMPEQB Y1, Y12, Y3
	MASK(56)
	VPCMPEQB Y0, Y13, Y2 // comma
	VPCMPEQB Y1, Y13, Y3
	MASK(64)
	VPCMPEQB Y0, Y14, Y2 // zero
	VPCMPEQB Y1, Y14, Y3
	MASK(72)
	VPSUBB   Y14, Y0, Y4 // digit: min(x-'0', 9) == x-'0'
	VPSUBB   Y14, Y1, Y5
	VPMINUB  Y4, Y15, Y2
	VPMINUB  Y5, Y15, Y3
	VPCMPEQB Y4, Y2, Y2
	VPCMPEQB Y5, Y3, Y3
	MASK(80)
	VZEROUPPER
	RET

// func cpuAVX2() bool
// CPUID leaf 7 says whether the processor has AVX2, leaf 1 and XGETBV
// whether the operating system saves the YMM registers.
TEXT ·cpuAVX2(SB), NOSPLIT, $0-1
	MOVB  $0, ret+0(FP)
	XORL  AX, AX
	CPUID
	CMPL  AX, $7
	JB    done
	MOVL  $1, AX
	XORL  CX, CX
	CPUID
	ANDL  $0x18000000, CX // OSXSAVE and AVX
	CMPL  CX, $0x18000000
	JNE   done
	XORL  CX, CX
	XGETBV
	ANDL  $6, AX // XMM and YMM state
	CMPL  AX, $6
	JNE   done
	MOVL  $7, AX
	XORL  CX, CX
	CPUID
	SHRL  $5, BX // AVX2
	ANDL  $1, BX
	MOVB  BX, ret+0(FP)
done:
	RET

DATA numberBytes<>+0(SB)/4, $0x652E2B2D // - + . e
GLOBL numberBytes<>(SB), RODATA|NOPTR, $4

// func classifyNumbersAVX2(b *[64]byte, m *numberMasks)
TEXT ·classifyNumbersAVX2(SB), NOSPLIT, $0-16
	MOVQ b+0(FP), SI
	MOVQ m+8(FP), DI
	VPBROADCASTB numberBytes<>+0(SB), Y6  // -
	VPBROADCASTB numberBytes<>+1(SB), Y7  // +
	VPBROADCASTB numberBytes<>+2(SB), Y8  // .
	VPBROADCASTB numberBytes<>+3(SB), Y9  // e
	VPBROADCASTB classBytes<>+16(SB), Y10 // 0x20
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	VPCMPEQB Y0, Y6, Y2 // minus
	VPCMPEQB Y1, Y6, Y3
	MASK(0)
	VPCMPEQB Y0, Y7, Y2 // plus
	VPCMPEQB Y1, Y7, Y3
	MASK(8)
	VPCMPEQB Y0, Y8, Y2 // dot
	VPCMPEQB Y1, Y8, Y3
	MASK(16)
	VPOR     Y0, Y10, Y4 // exp: x|0x20 == e
	VPOR     Y1, Y10, Y5
	VPCMPEQB Y4, Y9, Y2
	VPCMPEQB Y5, Y9, Y3
	MASK(24)
	VZEROUPPER
	RET
