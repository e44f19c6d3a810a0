package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// redisServer is the local redis-server the `store redis` configuration shares its table through,
// started by the command on a free loopback port, as it starts the upstream and the Caddies.
type redisServer struct {
	port int
	cmd  *exec.Cmd
	log  string
}

func (b *bench) startRedis() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not found (Debian package redis-server): needed by the configuration with store redis")
	}
	r := &redisServer{}
	if r.port, err = freePort(); err != nil {
		return err
	}
	dir := filepath.Join(b.dir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r.log = filepath.Join(dir, "redis.log")
	r.cmd = exec.Command(bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", r.log)
	if err := r.cmd.Start(); err != nil {
		return err
	}
	b.redis = r
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := r.info(); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d did not answer: %v\n%s", r.port, err, tail(r.log))
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.logf("redis-server on 127.0.0.1:%d (pid %d)", r.port, r.cmd.Process.Pid)
	return nil
}

func (r *redisServer) stop() {
	if r != nil && r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// redisStats are counters of INFO stats: commands processed, and read events, which count the round
// trips clients made (a pipeline of several commands is one read event when it arrives in one piece).
type redisStats struct{ commands, reads int64 }

func (r *redisServer) stats() redisStats {
	info, err := r.info()
	if err != nil {
		return redisStats{-1, -1}
	}
	num := func(field string) int64 {
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, field+":"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return -1
	}
	return redisStats{num("total_commands_processed"), num("total_reads_processed")}
}

// info sends INFO stats on a connection of its own (itself one command and one read event, which
// stats subtracts from nothing: two calls per run add 2 to runs of thousands of requests).
func (r *redisServer) info() (string, error) {
	return r.command("INFO stats")
}

// command sends one inline command and reads its reply (a bulk string, an integer or a status).
func (r *redisServer) command(cmd string) (string, error) {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s\r\n", cmd); err != nil {
		return "", err
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("redis: %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "+"):
		return line[1:], nil
	}
	return "", fmt.Errorf("redis: %q", line)
}
