package tables

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// maxTornValue bounds the length field of a value cut off by the end of
// the file that checkFile accepts as a torn final write (which buntdb's
// loader truncates away) rather than as corruption.
const maxTornValue = 256 << 20

// checkFile verifies the framing of a buntdb file (Redis-protocol
// commands: "*N\r\n" then N times "$LEN\r\n" LEN bytes "\r\n"; NUL bytes
// between commands are skipped) without loading it. buntdb's loader trusts
// the length fields — one flipped bit can make it allocate gigabytes and
// kill the process — so a file must pass this check before buntdb reads
// it. A command cut short at the end of the file is fine: buntdb truncates
// it (that is what a crash in the middle of a write leaves). A missing file
// is fine too.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	c := framing{r: bufio.NewReaderSize(f, 64<<10), size: fi.Size()}
	err = c.check()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil // the end of the file, possibly mid-command
	}
	return err
}

type framing struct {
	r    *bufio.Reader
	pos  int64 // bytes consumed
	size int64
}

var errFraming = errors.New("malformed file")

func (c *framing) check() error {
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return err
		}
		c.pos++
		if b == 0 {
			continue
		}
		if b != '*' {
			return fmt.Errorf("%w: byte 0x%02x at offset %d where a command starts", errFraming, b, c.pos-1)
		}
		parts, err := c.number()
		if err != nil {
			return err
		}
		if parts < 1 || parts > 16 {
			return fmt.Errorf("%w: command of %d parts at offset %d", errFraming, parts, c.pos)
		}
		for range parts {
			if b, err = c.r.ReadByte(); err != nil {
				return err
			}
			c.pos++
			if b != '$' {
				return fmt.Errorf("%w: byte 0x%02x at offset %d where a length starts", errFraming, b, c.pos-1)
			}
			n, err := c.number()
			if err != nil {
				return err
			}
			if left := c.size - c.pos; n+2 > left {
				if n > maxTornValue {
					return fmt.Errorf("%w: length %d at offset %d runs past the end of the file", errFraming, n, c.pos)
				}
				return io.ErrUnexpectedEOF // a torn final write
			}
			if _, err := c.r.Discard(int(n)); err != nil {
				return err
			}
			c.pos += n
			if err := c.crlf(); err != nil {
				return err
			}
		}
	}
}

// number reads decimal digits terminated by "\r\n".
func (c *framing) number() (int64, error) {
	var n int64
	digits := 0
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, err
		}
		c.pos++
		switch {
		case b >= '0' && b <= '9' && digits < 18:
			n = n*10 + int64(b-'0')
			digits++
		case b == '\r' && digits > 0:
			c.pos--
			if err := c.r.UnreadByte(); err != nil {
				return 0, err
			}
			return n, c.crlf()
		default:
			return 0, fmt.Errorf("%w: byte 0x%02x at offset %d in a number", errFraming, b, c.pos-1)
		}
	}
}

func (c *framing) crlf() error {
	for _, want := range []byte{'\r', '\n'} {
		b, err := c.r.ReadByte()
		if err != nil {
			return err
		}
		c.pos++
		if b != want {
			return fmt.Errorf("%w: byte 0x%02x at offset %d, want 0x%02x", errFraming, b, c.pos-1, want)
		}
	}
	return nil
}
