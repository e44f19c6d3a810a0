package conflict

import (
	"testing"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/unicode"
)

func encode(t *testing.T, e encoding.Encoding, s string) []byte {
	t.Helper()
	b, err := e.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNormalizeUpstreamCharsets: a body in a legacy charset gives its
// detail in UTF-8, whatever WHATWG label names the charset.
func TestNormalizeUpstreamCharsets(t *testing.T) {
	const (
		ja = "このページは他のユーザーによって更新されました。"
		ru = "Конфликт: документ изменён другим пользователем."
	)
	page := func(title, text string) string {
		return "<html><head><title>" + title + "</title></head><body><h1>409 Conflict</h1><p>" + text +
			"</p><hr><address>Apache/2.4.62 Server at localhost Port 80</address></body></html>"
	}
	tests := []struct {
		name, contentType string
		body              []byte
		detail            string
	}{
		{"Shift_JIS HTML", "text/html; charset=Shift_JIS", encode(t, japanese.ShiftJIS, page("競合", ja)), ja},
		{"Shift_JIS text, label sjis", "text/plain; charset=sjis", encode(t, japanese.ShiftJIS, "競合: "+ja), "競合: " + ja},
		{"Shift_JIS text, literal bytes", "text/plain; charset=shift_jis", []byte("\x8b\xa3\x8d\x87\x82\xc5\x82\xb7\x81\x42"), "競合です。"},
		{"KOI8-R HTML", "text/html; charset=KOI8-R", encode(t, charmap.KOI8R, page("Конфликт", ru)), ru},
		{"KOI8-R text", "text/plain; charset=koi8-r", encode(t, charmap.KOI8R, ru), ru},
		{"KOI8-R text, literal bytes", "text/plain; charset=koi8", []byte("\xeb\xcf\xce\xc6\xcc\xc9\xcb\xd4."), "Конфликт."},
		{"windows-1251 text, label cp1251", "text/plain; charset=cp1251", encode(t, charmap.Windows1251, ru), ru},
		{"EUC-JP XML", "application/xml; charset=euc-jp", encode(t, japanese.EUCJP, "<Error><Code>Conflict</Code><Message>"+ja+"</Message></Error>"), ja},
		{"UTF-16 without a byte order mark is little-endian", "text/plain; charset=utf-16", encode(t, unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM), ru), ru},
		{"UTF-16BE without a byte order mark", "text/plain; charset=utf-16be", encode(t, unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM), ja), ja},
		{"a byte order mark beats the label", "text/plain; charset=koi8-r", append([]byte{0xEF, 0xBB, 0xBF}, ru...), ru},
		{"UTF-8 labelled KOI8-R stays UTF-8", "text/plain; charset=koi8-r", []byte(ru), ru},
		{"an unknown label reads as UTF-8", "text/plain; charset=x-no-such", []byte(ru), ru},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := normalize(t, Upstream{Status: 409, ContentType: tt.contentType, Body: tt.body})
			if got := m["detail"]; got != tt.detail {
				t.Errorf("detail = %q, want %q", got, tt.detail)
			}
		})
	}
}
