package backends

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// LitmusSuites are litmus 0.13's suites, in the order it runs them by default.
var LitmusSuites = []string{"basic", "copymove", "props", "locks", "http"}

// LitmusTest is one test of a litmus run. Numbers count from 0 in each suite; names repeat within a
// suite (props runs "propget" several times), so Suite, Number and Name together identify a test.
type LitmusTest struct {
	Suite    string
	Number   int
	Name     string
	Result   string   // "pass", "FAIL" or "SKIPPED", as litmus prints it
	Detail   string   // what litmus printed after FAIL or SKIPPED (the reason), or ""
	Warnings []string // litmus's WARNING lines for this test (it still passes)
}

// ID is "suite/NN.name", e.g. "locks/06.lock_excl".
func (lt LitmusTest) ID() string { return fmt.Sprintf("%s/%02d.%s", lt.Suite, lt.Number, lt.Name) }

// LitmusReport is the outcome of RunLitmus.
type LitmusReport struct {
	Tests    []LitmusTest
	Output   string // litmus's output (its carriage returns replaced by newlines)
	DebugLog string // litmus's debug.log: every request and response, headers included (~350 KB)
}

// Passed lists the IDs of the tests that passed (with or without warnings).
func (r *LitmusReport) Passed() []string {
	return r.ids(func(lt LitmusTest) bool { return lt.Result == "pass" })
}

// Failed lists the IDs of the tests that did not pass (FAIL, SKIPPED, or anything else), each with the
// reason litmus gave: "locks/09.notowner_modify: FAIL (...)".
func (r *LitmusReport) Failed() []string {
	var out []string
	for _, lt := range r.Tests {
		if lt.Result != "pass" {
			out = append(out, strings.TrimSpace(lt.ID()+": "+lt.Result+" "+lt.Detail))
		}
	}
	return out
}

// Suite returns the tests of one suite.
func (r *LitmusReport) Suite(name string) []LitmusTest {
	var out []LitmusTest
	for _, lt := range r.Tests {
		if lt.Suite == name {
			out = append(out, lt)
		}
	}
	return out
}

func (r *LitmusReport) ids(keep func(LitmusTest) bool) []string {
	var out []string
	for _, lt := range r.Tests {
		if keep(lt) {
			out = append(out, lt.ID())
		}
	}
	return out
}

// ErrNotInstalled is wrapped by the errors of RunLitmus and DumpDOM when their program is missing.
var ErrNotInstalled = errors.New("not installed")

// RequireLitmus skips the test (or fails it under CONFLICT_REQUIRE_BACKENDS=1) when litmus is missing.
func RequireLitmus(t testing.TB) {
	t.Helper()
	if lookPath("litmus") == "" {
		missing(t, "litmus not installed: run .ci/run or apt-get install litmus")
	}
}

// RunLitmus runs litmus 0.13 (Debian litmus, the WebDAV test suite) against baseURL, the URL of a
// WebDAV collection ("http://127.0.0.1:PORT/", through a proxy or not; a missing trailing slash is
// added), and returns every test's result. Without suites it runs all of LitmusSuites. It runs with
// --keep-going, so a failing suite does not stop the others; it works in a temporary folder (litmus
// writes debug.log and child.log to its working directory). litmus creates, and at the end deletes,
// the collection "litmus/" under baseURL: two runs against the same collection at the same time
// disturb each other. Every request it sends carries "X-Litmus: <suite>: <n> (<test>)".
//
// The error is non-nil when litmus is missing (wrapping ErrNotInstalled), ctx ends, or its output
// has no test results at all; failing tests are no error: look at Failed.
func RunLitmus(ctx context.Context, baseURL string, suites ...string) (*LitmusReport, error) {
	bin := lookPath("litmus")
	if bin == "" {
		return nil, fmt.Errorf("litmus: %w (apt-get install litmus)", ErrNotInstalled)
	}
	if !strings.HasSuffix(baseURL, "/") {
		baseURL += "/"
	}
	if len(suites) == 0 {
		suites = LitmusSuites
	}
	dir, err := os.MkdirTemp("", "litmus-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, bin, "--keep-going", baseURL)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TESTS="+strings.Join(suites, " "))
	cmd.SysProcAttr = groupAttr(childAttr()) // the suites are children of the litmus shell script
	cmd.Cancel = func() error { return signalGroup(cmd.Process, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	report := &LitmusReport{Output: strings.ReplaceAll(out.String(), "\r", "\n")}
	if log, err := os.ReadFile(filepath.Join(dir, "debug.log")); err == nil {
		report.DebugLog = string(log)
	}
	report.Tests = parseLitmus(report.Output)
	if ctx.Err() != nil {
		return report, fmt.Errorf("litmus: %w\n%s", ctx.Err(), report.Output)
	}
	if len(report.Tests) == 0 {
		return report, fmt.Errorf("litmus printed no test results (%v):\n%s", runErr, report.Output)
	}
	return report, nil
}

// Litmus is RunLitmus for a test: a missing litmus skips it (or fails it in CI), an error fails it.
func Litmus(t testing.TB, baseURL string, suites ...string) *LitmusReport {
	t.Helper()
	RequireLitmus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	report, err := RunLitmus(ctx, baseURL, suites...)
	if err != nil {
		t.Fatalf("backends: %v", err)
	}
	return report
}

var (
	litmusSuiteLine = regexp.MustCompile("^-> running `([^']+)':")
	// " 6. lock_excl............. pass", "18. cond_put_corrupt_token WARNING: ...": a test's start,
	// maybe with its result. litmus pads names with dots to 20 characters, or adds one space.
	litmusTestLine = regexp.MustCompile(`^\s*(\d+)\. ([^ .]+)\.* ?(.*)$`)
	// "    ...................... pass (with 1 warning)": the result after a WARNING line.
	litmusContinued = regexp.MustCompile(`^\s+\.+ ?(.*)$`)
)

// parseLitmus reads litmus's output (carriage returns already turned into newlines): each test
// prints its number and name, then later (after any WARNING lines) its result.
func parseLitmus(output string) []LitmusTest {
	var tests []LitmusTest
	suite := ""
	current := -1 // index in tests of the test that has no result yet
	open := -1    // index of a test whose reason "(...)" continues on the next line
	result := func(text string) {
		if current < 0 {
			return
		}
		i := current
		lt := &tests[i]
		defer func() {
			if lt.Result != "" && strings.Count(lt.Detail, "(") > strings.Count(lt.Detail, ")") {
				open = i
			}
		}()
		switch {
		case strings.HasPrefix(text, "WARNING:"):
			lt.Warnings = append(lt.Warnings, strings.TrimSpace(strings.TrimPrefix(text, "WARNING:")))
			return
		case strings.HasPrefix(text, "pass"):
			lt.Result = "pass"
		case strings.HasPrefix(text, "FAIL"):
			lt.Result, lt.Detail = "FAIL", strings.TrimSpace(strings.TrimPrefix(text, "FAIL"))
		case strings.HasPrefix(text, "SKIPPED"):
			lt.Result, lt.Detail = "SKIPPED", strings.TrimSpace(strings.TrimLeft(strings.TrimPrefix(text, "SKIPPED"), " -"))
		default:
			return // progress output of the test itself
		}
		current = -1
	}
	for _, line := range strings.Split(output, "\n") {
		if open >= 0 && (strings.HasPrefix(line, "<-") || strings.HasPrefix(line, "->") ||
			litmusTestLine.MatchString(line) || litmusContinued.MatchString(line)) {
			open = -1 // a reason with an unbalanced "(": it ended anyway
		}
		if open >= 0 {
			// "SKIPPED (locking tests skipped,\nserver does not claim Class 2 compliance)"
			lt := &tests[open]
			if strings.TrimSpace(line) == "" {
				continue
			}
			lt.Detail += " " + strings.TrimSpace(line)
			if strings.Count(lt.Detail, "(") <= strings.Count(lt.Detail, ")") {
				open = -1
			}
			continue
		}
		if m := litmusSuiteLine.FindStringSubmatch(line); m != nil {
			suite, current = m[1], -1
			continue
		}
		if m := litmusTestLine.FindStringSubmatch(line); m != nil && suite != "" {
			n, _ := strconv.Atoi(m[1])
			// litmus prints a test's number and name twice (before and after a carriage return).
			if current < 0 || tests[current].Number != n || tests[current].Name != m[2] {
				if current >= 0 && tests[current].Result == "" {
					tests[current].Result = "unknown"
				}
				tests = append(tests, LitmusTest{Suite: suite, Number: n, Name: m[2]})
				current = len(tests) - 1
			}
			result(strings.TrimSpace(m[3]))
			continue
		}
		if m := litmusContinued.FindStringSubmatch(line); m != nil {
			rest := strings.TrimSpace(m[1])
			// "    ...................... \r19. complex_cond_put" leaves an empty continuation.
			if rest != "" {
				result(rest)
			}
		}
	}
	if current >= 0 && tests[current].Result == "" {
		tests[current].Result = "unknown"
	}
	return tests
}
