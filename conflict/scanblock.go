package conflict

import (
	"encoding/binary"
	"math/bits"
)

// This file skips a large container not on the pointer's path a block of
// 64 bytes at a time, as simdjson's first stage does: the bytes of a block
// are classified into bitmasks (classifyBlock), strings are found from the
// unescaped quotes by a prefix XOR, and the grammar is checked on whole
// masks (which token may follow which, RFC 8259 sections 2 to 7) instead
// of one token after the other. Only brackets, escapes and scalars that
// are not plain integers are looked at one by one. It accepts exactly what
// skipContainer accepts.

// blockMasks classifies the 64 bytes of a block, bit i for byte i.
type blockMasks struct {
	quote, backslash uint64
	ctrl             uint64 // below 0x20
	space            uint64 // JSON white space: space, tab, line feed, carriage return
	open, close      uint64 // { or [, } or ]
	curly            uint64 // bit 5 of the byte: set for { and }, clear for [ and ]
	colon, comma     uint64
	zero, digit      uint64 // 0, and 0 to 9
}

const lows = 0x7f7f7f7f7f7f7f7f

// byteIs marks with its high bit each byte of x equal to c (SWAR, exact:
// no borrow crosses bytes).
func byteIs(x uint64, c byte) uint64 {
	t := x ^ uint64(c)*ones
	return ^((t&lows + lows) | t) & highs
}

// gather packs the high bits of the 8 bytes of m into 8 bits.
func gather(m uint64) uint64 { return (m >> 7) * 0x0102040810204080 >> 56 }

// classifyBlockSWAR is classifyBlock in portable Go, 8 bytes at a time.
func classifyBlockSWAR(b *[64]byte, m *blockMasks) {
	var quote, backslash, ctrl, space, open, close, curly, colon, comma, zero, digit uint64
	for w := 0; w < 64; w += 8 {
		x := binary.LittleEndian.Uint64(b[w:])
		lo := x & lows
		x20 := x | 0x20*ones
		quote |= gather(byteIs(x, '"')) << w
		backslash |= gather(byteIs(x, '\\')) << w
		ctrl |= gather(^((lo+0x60*ones)|x)&highs) << w
		space |= gather(byteIs(x, ' ')|byteIs(x, '\t')|byteIs(x, '\n')|byteIs(x, '\r')) << w
		open |= gather(byteIs(x20, '{')) << w
		close |= gather(byteIs(x20, '}')) << w
		curly |= gather(x<<2&highs) << w
		colon |= gather(byteIs(x, ':')) << w
		comma |= gather(byteIs(x, ',')) << w
		zero |= gather(byteIs(x, '0')) << w
		digit |= gather((lo+0x50*ones)&^(lo+0x46*ones)&^x&highs) << w
	}
	*m = blockMasks{quote, backslash, ctrl, space, open, close, curly, colon, comma, zero, digit}
}

// numberMasks classifies the bytes of a block that numbers hold besides
// digits (RFC 8259 section 6), for the blocks that have such numbers.
type numberMasks struct {
	minus, plus, dot uint64
	exp              uint64 // e or E
}

// classifyNumbersSWAR is classifyNumbers in portable Go.
func classifyNumbersSWAR(b *[64]byte, m *numberMasks) {
	var minus, plus, dot, exp uint64
	for w := 0; w < 64; w += 8 {
		x := binary.LittleEndian.Uint64(b[w:])
		minus |= gather(byteIs(x, '-')) << w
		plus |= gather(byteIs(x, '+')) << w
		dot |= gather(byteIs(x, '.')) << w
		exp |= gather(byteIs(x|0x20*ones, 'e')) << w
	}
	*m = numberMasks{minus, plus, dot, exp}
}

// prefixXor sets bit i to the parity of the bits 0 to i of x: 1 inside a
// string, from its opening quote up to its closing one (excluded).
func prefixXor(x uint64) uint64 {
	x ^= x << 1
	x ^= x << 2
	x ^= x << 4
	x ^= x << 8
	x ^= x << 16
	x ^= x << 32
	return x
}

// escapedBytes marks the bytes escaped by a backslash (simdjson's
// branchless odd-length backslash runs): the byte after an odd run.
// prev is 1 when the block's first byte is escaped; it returns the same
// for the next block.
func escapedBytes(backslash, prev uint64) (escaped, next uint64) {
	const even = 0x5555555555555555
	backslash &^= prev
	follows := backslash<<1 | prev
	oddStarts := backslash &^ even &^ follows
	evenRuns, carry := bits.Add64(oddStarts, backslash, 0)
	return (even ^ evenRuns<<1) & follows, carry
}

// follow marks, for each bit of x (the byte after a token), the first
// byte at or after it that is not white space ws. carry is 1 when only
// white space follows up to the end of the block.
func follow(x, ws uint64) (f, carry uint64) {
	sum, carry := bits.Add64(x&ws, ws, 0)
	return x&^ws | sum&^ws, carry
}

// scalarByte reports whether c can continue a number or literal: not
// white space, structure or a quote.
func scalarByte(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '{', '}', '[', ']', ':', ',', '"':
		return false
	}
	return true
}

// scalarEnds reports whether the scalar at doc[i] is a literal or a number
// (RFC 8259 sections 3 and 6) that the run of scalar bytes holds entirely.
func scalarEnds(doc []byte, i int) bool {
	j := skipScalar(doc, i)
	return j >= 0 && (j == len(doc) || !scalarByte(doc[j]))
}

// skipBlocks goes on where skipContainer was, at the value at doc[i]
// inside n open containers (their kinds in s.stack, the innermost an
// object when object is set), and returns the offset after the container
// that closes the last of them, or -1 if it is not JSON. At most limit
// containers may be open.
func (s *scan) skipBlocks(i, n int, object bool, limit int) int {
	doc := s.doc
	var (
		m   blockMasks
		pad [64]byte
		// What the block before left open:
		inString    uint64 // all ones: inside a string
		escaped     uint64 // 1: the first byte is escaped
		keyString   uint64 // 1: inside a member name
		scalar      uint64 // 1: inside a number or literal
		afterCurly  uint64 // 1: white space since a {
		afterSquare uint64 // since a [
		afterValue  uint64 // since the end of a value
		afterName   uint64 // since a member name
		afterComma  uint64 // since a comma in an object
		beforeValue uint64 // since a colon or a comma in an array
	)
	beforeValue = 1 // doc[i] is a value, as after a colon
	for base := i; base < len(doc); base += 64 {
		b := &pad
		if len(doc)-base >= 64 {
			b = (*[64]byte)(doc[base : base+64])
		} else {
			for k := copy(pad[:], doc[base:]); k < 64; k++ {
				pad[k] = ' ' // past the end: the container is not closed, so -1 below
			}
		}
		classifyBlock(b, &m)

		// Strings (RFC 8259 section 7): between unescaped quotes.
		var esc uint64
		if m.backslash|escaped != 0 {
			esc, escaped = escapedBytes(m.backslash, escaped)
		}
		quote := m.quote &^ esc
		in := prefixXor(quote) ^ inString
		inString = uint64(int64(in) >> 63)
		opening := quote & in
		closing := quote &^ in
		out := ^in
		ws := m.space & out
		open, close := m.open&out, m.close&out
		comma := m.comma & out
		scal := out &^ (m.space | m.open | m.close | m.colon | m.comma | m.quote)

		// Brackets: their nesting, and for each comma whether it separates
		// members or elements.
		kinds := uint64(0) // where the innermost container's kind changes
		if object {
			kinds = 1
		}
		rng := ^uint64(0) // the bytes up to the container's end
		last := uint64(0) // its closing bracket
		br := open | close
		for br&-br&close != 0 { // closes of containers opened in earlier blocks
			bit := br & -br
			br ^= bit
			if m.curly&bit != 0 != object {
				return -1 // } closing an array or ] an object
			}
			if n--; n == 0 {
				last, rng, br = bit, bit<<1-1, 0
				break
			}
			if o := s.stack[(n-1)>>6]>>((n-1)&63)&1 == 1; o != object {
				kinds ^= bit
				object = o
			}
		}
		inObject := prefixXor(kinds)
		if br != 0 && n > 0 {
			// The common case, all at once: each open is closed by the next
			// bracket but the last one, which may stay open (p is 1 from an
			// open to its close), and none closes the container (n > 0); a sum
			// carries each { through its run to the close that must be a }.
			p := prefixXor(br)
			sum := p + br&open&m.curly
			if br&(open&^p|close&p) == 0 && sum&^p == br&close&m.curly {
				if n == limit {
					return -1
				}
				inObject = inObject&^p | p&^sum
				if p>>63 != 0 {
					bit := uint64(1) << (63 - bits.LeadingZeros64(br))
					object = m.curly&bit != 0
					if object {
						s.stack[n>>6] |= 1 << (n & 63)
					} else {
						s.stack[n>>6] &^= 1 << (n & 63)
					}
					n++
				}
				br = 0
			}
		}
		if br != 0 { // the others one by one
			for ; br != 0; br &= br - 1 {
				bit := br & -br
				curly := m.curly&bit != 0
				if open&bit != 0 {
					if n == limit {
						return -1
					}
					if curly {
						s.stack[n>>6] |= 1 << (n & 63)
					} else {
						s.stack[n>>6] &^= 1 << (n & 63)
					}
					n++
				} else {
					if curly != object {
						return -1
					}
					if n--; n == 0 {
						last = bit
						rng = bit<<1 - 1
						break
					}
					curly = s.stack[(n-1)>>6]>>((n-1)&63)&1 == 1
				}
				if curly != object {
					kinds ^= bit
					object = curly
				}
			}
			inObject = prefixXor(kinds)
		}

		// Bytes no string holds: control characters but white space
		// outside strings; backslashes outside strings.
		if (m.ctrl&(in|^m.space)|m.backslash&out)&rng != 0 {
			return -1
		}
		if esc != 0 || m.backslash != 0 {
			for e := m.backslash &^ esc & rng; e != 0; e &= e - 1 {
				if escapeLen(doc, base+bits.TrailingZeros64(e)+1) == 0 {
					return -1
				}
			}
		}

		// Numbers and literals (RFC 8259 sections 3 and 6), each a run of
		// scalar bytes: a block of plain integers at once (none starts with
		// 0 and goes on), the others by blockScalars.
		starts := scal &^ (scal<<1 | scalar) & rng
		if starts != 0 {
			if scal&^m.digit == 0 {
				if starts&m.zero&(scal>>1) != 0 {
					return -1
				}
				if scal&rng>>63 != 0 && !scalarEnds(doc, base+63-bits.LeadingZeros64(starts)) {
					return -1 // the last run goes on in the next block
				}
			} else if !blockScalars(doc, base, b, scal, scalar, starts, rng, &m) {
				return -1
			}
		}
		valueStart := opening | open | starts

		// The grammar (RFC 8259 sections 2, 4 and 5): what may follow each
		// token, through white space. The flows carry into the next block.
		var f, c uint64
		f, c = follow(open&m.curly<<1|afterCurly, ws)
		afterCurly = c | open&m.curly>>63
		if f&rng&^(opening|close&m.curly) != 0 {
			return -1
		}
		names := f & opening
		f, c = follow(open&^m.curly<<1|afterSquare, ws)
		afterSquare = c | open&^m.curly>>63
		if f&rng&^(valueStart|close&^m.curly) != 0 {
			return -1
		}
		separators := m.colon&out | comma&^inObject
		f, c = follow(separators<<1|beforeValue, ws)
		beforeValue = c | separators>>63
		if f&rng&^valueStart != 0 {
			return -1
		}
		f, c = follow(comma&inObject<<1|afterComma, ws)
		afterComma = c | comma&inObject>>63
		if f&rng&^opening != 0 {
			return -1
		}
		names |= f
		sum, carry := bits.Add64(in, names, keyString)
		nameEnds := sum &^ in
		keyString = carry
		f, c = follow(nameEnds<<1|afterName, ws)
		afterName = c | nameEnds>>63
		if f&rng&^m.colon != 0 {
			return -1
		}
		ends := closing&^nameEnds | close&^last
		f, c = follow(ends<<1|afterValue|(scal<<1|scalar)&^scal, ws)
		afterValue = c | ends>>63
		scalar = scal >> 63
		if f&rng&^(comma|close) != 0 {
			return -1
		}
		if n == 0 {
			return base + bits.TrailingZeros64(last) + 1
		}
	}
	return -1
}

// blockScalars checks the runs of scalar bytes that start in a block
// (starts) and end before rng does: a run that goes on into the next block
// and literals one by one, numbers all at once (validNumbers). scalar is 1
// when a run comes from the block before (checked there).
func blockScalars(doc []byte, base int, b *[64]byte, scal, scalar, starts, rng uint64, m *blockMasks) bool {
	runs := scal &^ (scal &^ (scal + 1) & -scalar) & rng
	var last uint64
	if scal&rng>>63 != 0 { // the last run goes on in the next block
		p := 63 - bits.LeadingZeros64(starts)
		if !scalarEnds(doc, base+p) {
			return false
		}
		last = 1 << p
		runs &= last - 1
	}
	numbers := starts & m.digit &^ last
	lits := starts &^ m.digit &^ last
	var nm numberMasks
	if lits != 0 { // a minus starts a number, anything else a literal
		classifyBlockNumbers(b, &nm)
		numbers |= lits & nm.minus
		lits &^= nm.minus
	}
	for ; lits != 0; lits &= lits - 1 {
		p := bits.TrailingZeros64(lits)
		j := base + p
		var ok bool
		switch l := bits.TrailingZeros64(^scal >> p); doc[j] {
		case 't':
			ok = l == 4 && string(doc[j:j+4]) == "true"
		case 'n':
			ok = l == 4 && string(doc[j:j+4]) == "null"
		case 'f':
			ok = l == 5 && string(doc[j:j+5]) == "false"
		}
		if !ok {
			return false
		}
	}
	numberRuns := runs &^ (runs + numbers)
	if numberRuns&^m.digit == 0 {
		return numbers&m.zero&(scal>>1) == 0
	}
	if starts&^m.digit&^last == 0 {
		classifyBlockNumbers(b, &nm)
	}
	return validNumbers(numbers, numberRuns, m, &nm)
}

// validNumbers reports whether the runs of scalar bytes within a block
// that start at starts (a digit or a minus) and hold the bytes in runs are
// numbers (RFC 8259 section 6): [-] int [frac] [exp]. From each start a sum
// carries through the integer's digits to the byte after them, which must
// end the run or start a fraction or an exponent; from a fraction's dot
// the same through its digits, and from an exponent's e through its sign
// and digits.
func validNumbers(starts, runs uint64, m *blockMasks, nm *numberMasks) bool {
	digit := m.digit
	minus := nm.minus & starts
	if (minus<<1)&^digit != 0 {
		return false // a minus not followed by a digit
	}
	if m.zero&(starts&^minus|minus<<1)<<1&digit != 0 {
		return false // an integer part of more than one digit starting with 0
	}
	g := digit | minus
	after := (g + starts) &^ g // after [-] int
	if after&runs&^(nm.dot|nm.exp) != 0 {
		return false
	}
	dot := nm.dot & after
	if (dot<<1)&^digit != 0 {
		return false // a dot not followed by a digit
	}
	g = digit | dot
	afterFrac := (g + dot) &^ g
	if afterFrac&runs&^nm.exp != 0 {
		return false
	}
	exp := nm.exp & runs & (after | afterFrac)
	sign := (nm.minus | nm.plus) & (exp << 1)
	if (exp<<1&^sign|sign<<1)&^digit != 0 {
		return false // an exponent without digits
	}
	g = digit | sign | exp
	return (g+exp)&^g&runs == 0
}
