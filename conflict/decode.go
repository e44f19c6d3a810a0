package conflict

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// minDecodeLimit is the least a compressed upstream body may inflate to;
// beyond that the limit is 4 times the compressed size (a zip bomb must not
// blow memory).
const minDecodeLimit = 1 << 20

// decodeContent undoes the content codings of body (RFC 9110 section
// 8.4), the last applied first. Output is bounded: cut reports that it hit
// the bound or that the compressed stream ended early. ok is false for a
// coding that cannot be decoded.
func decodeContent(body []byte, encoding string) (out []byte, cut, ok bool) {
	if strings.TrimSpace(encoding) == "" {
		return body, false, true
	}
	limit := max(4*len(body), minDecodeLimit)
	codings := strings.Split(encoding, ",")
	if len(codings) > 3 {
		return nil, false, false // nobody stacks codings; a bomb might
	}
	for i := len(codings) - 1; i >= 0; i-- {
		var r io.Reader
		switch strings.ToLower(strings.TrimSpace(codings[i])) {
		case "", "identity":
			continue
		case "gzip", "x-gzip":
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				return nil, false, false
			}
			r = zr
		case "deflate":
			// RFC 9110 says zlib; some servers send raw deflate.
			if zr, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
				r = zr
			} else {
				r = flate.NewReader(bytes.NewReader(body))
			}
		case "zstd":
			zr, err := zstd.NewReader(bytes.NewReader(body),
				zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderMaxMemory(64<<20))
			if err != nil {
				return nil, false, false
			}
			defer zr.Close()
			r = zr
		default: // br (not in Caddy's dependencies), compress, unknown
			return nil, false, false
		}
		dec, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
		switch {
		case len(dec) > limit:
			dec, cut = dec[:limit], true
		case err != nil && len(dec) == 0:
			return nil, false, false
		case err != nil:
			cut = true
		}
		body = dec
	}
	return body, cut, true
}

// decodable reports whether decodeContent can undo a content coding.
func decodable(coding string) bool {
	for _, c := range [...]string{"gzip", "x-gzip", "deflate", "zstd", "identity"} {
		if strings.EqualFold(coding, c) {
			return true
		}
	}
	return false
}

// DecodableAcceptEncoding narrows an Accept-Encoding request header (RFC
// 9110 section 12.5.3) to the codings NormalizeUpstream can decode, so
// that an upstream never answers in one it cannot read (br, compress, or
// any through "*"). It returns the narrowed value ("" means: send no
// Accept-Encoding) and whether it differs from v; an unchanged value costs
// no allocation.
func DecodableAcceptEncoding(v string) (string, bool) {
	rest, dropped := v, false
	for rest != "" {
		var item string
		item, rest, _ = strings.Cut(rest, ",")
		coding, _, _ := strings.Cut(item, ";")
		if coding = strings.TrimSpace(coding); coding != "" && !decodable(coding) {
			dropped = true
			break
		}
	}
	if !dropped {
		return v, false
	}
	var b strings.Builder
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		coding, _, _ := strings.Cut(item, ";")
		if coding = strings.TrimSpace(coding); coding == "" || !decodable(coding) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(item)
	}
	return b.String(), true
}
