// Command go-peer is the Go peer of corun's side-by-side benchmark suite: the same
// scenarios as the Rust peers, written as idiomatic Go (goroutines, channels, net, net/http),
// on Go's default runtime settings (GOMAXPROCS = the CPUs this process may run on).
//
// The command line is in usage (what "go-peer --help" prints). An unknown command or
// option, or a bad value, is one line on stderr and exit status 2, before anything runs.
//
// Output follows the suite's line protocol (bench/src/protocol.rs): lines
// "TAG key=value ...", with RESULT, PORT and READY tags.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const usage = `usage: go-peer COMMAND [OPTIONS]

commands (defaults in brackets):
  spawn-join   [--tasks N] [--batch B]   N empty goroutines [100000], joined B at a time [10000]
  ping-pong    [--round-trips N]         N round trips between two goroutines [100000]
  yield        [--tasks K] [--yields N]  K goroutines [1] each calling runtime.Gosched()
                                         N times [1000000], with GOMAXPROCS=1
  idle         [--tasks N] [--sleep-ms MS]
                                         N goroutines [100000] that each sleep MS ms [5000]
  echo-server                            a goroutine-per-connection echo server
  http-server                            a net/http hello-world server

Runs on Go's default runtime settings (GOMAXPROCS = the CPUs this process may use; 1 for
yield).
Output: bench/src/protocol.rs lines.
`

// options are the values of a command line; only the command's own are set by parseArgs.
type options struct {
	tasks, batch, roundTrips, yields, sleepMs uint
}

// errHelp is what parseArgs returns for --help.
var errHelp = errors.New("help")

// parseArgs checks a command line (without the program name) and returns its command and
// options: errHelp for --help or -h anywhere, another error naming what is wrong.
func parseArgs(args []string) (string, options, error) {
	opts := options{tasks: 100000, batch: 10000, roundTrips: 100000, yields: 1000000, sleepMs: 5000}
	for _, arg := range args {
		if arg == "--help" || arg == "-h" {
			return "", opts, errHelp
		}
	}
	if len(args) == 0 {
		return "", opts, errors.New("no command given (expected " + commands + ")")
	}
	if strings.HasPrefix(args[0], "-") {
		return "", opts, fmt.Errorf("unknown option `%s` before the command", args[0])
	}
	command := args[0]
	flags := flag.NewFlagSet(command, flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	count := func(name string, target *uint) { flags.Var(&once{target: target}, name, "") }
	switch command {
	case "spawn-join":
		count("tasks", &opts.tasks)
		count("batch", &opts.batch)
	case "ping-pong":
		count("round-trips", &opts.roundTrips)
	case "yield":
		opts.tasks = 1
		count("tasks", &opts.tasks)
		count("yields", &opts.yields)
	case "idle":
		count("tasks", &opts.tasks)
		count("sleep-ms", &opts.sleepMs)
	case "echo-server", "http-server":
	default:
		return "", opts, fmt.Errorf("unknown command `%s` (expected %s)", command, commands)
	}
	if err := flags.Parse(args[1:]); err != nil {
		return "", opts, err
	}
	if flags.NArg() > 0 {
		return "", opts, fmt.Errorf("unexpected argument `%s`", flags.Arg(0))
	}
	return command, opts, nil
}

const commands = "spawn-join|ping-pong|yield|idle|echo-server|http-server"

// once is a whole-number flag that may be given once.
type once struct {
	target *uint
	set    bool
}

func (o *once) String() string {
	if o.target == nil {
		return ""
	}
	return strconv.FormatUint(uint64(*o.target), 10)
}

func (o *once) Set(text string) error {
	if o.set {
		return errors.New("given twice")
	}
	n, err := strconv.ParseUint(text, 10, 0)
	if err != nil {
		return errors.New("expected a whole number")
	}
	*o.target, o.set = uint(n), true
	return nil
}

func main() {
	command, opts, err := parseArgs(os.Args[1:])
	if err == errHelp {
		fmt.Print(usage)
		os.Exit(0)
	} else if err != nil {
		fail(err.Error() + "; see `go-peer --help`")
	}
	switch command {
	case "spawn-join":
		spawnJoin(int(opts.tasks), int(opts.batch))
	case "ping-pong":
		pingPong(int(opts.roundTrips))
	case "yield":
		yields(int(opts.tasks), int(opts.yields))
	case "idle":
		idle(int(opts.tasks), time.Duration(opts.sleepMs)*time.Millisecond)
	case "echo-server":
		echoServer()
	case "http-server":
		httpServer()
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "go-peer:", message)
	os.Exit(2)
}

// emit prints one protocol line: the tag, then key=value pairs in order.
func emit(tag string, pairs ...interface{}) {
	var b strings.Builder
	b.WriteString(tag)
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(&b, " %v=%v", pairs[i], pairs[i+1])
	}
	fmt.Println(b.String())
}

func spawnJoin(tasks, batch int) {
	if batch < 1 {
		batch = 1
	}
	start := time.Now()
	for done := 0; done < tasks; {
		n := batch
		if tasks-done < n {
			n = tasks - done
		}
		var wg sync.WaitGroup
		wg.Add(n)
		for i := 0; i < n; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
		done += n
	}
	emit("RESULT", "tasks", tasks, "elapsed_ns", time.Since(start).Nanoseconds())
}

func pingPong(roundTrips int) {
	toPong := make(chan int, 1)
	toPing := make(chan int, 1)
	go func() {
		for value := range toPong {
			toPing <- value + 1
		}
	}()
	start := time.Now()
	value := 0
	for i := 0; i < roundTrips; i++ {
		toPong <- value
		value = <-toPing
	}
	elapsed := time.Since(start)
	close(toPong)
	if value != roundTrips {
		fail("lost a message")
	}
	emit("RESULT", "round_trips", roundTrips, "elapsed_ns", elapsed.Nanoseconds())
}

// yields runs tasks goroutines that each call runtime.Gosched() yields times, with
// GOMAXPROCS=1; the main goroutine spawns and waits for them, and its time from before the
// first spawn to after the last one is done, over all the yields, is the time per yield.
func yields(tasks, yields int) {
	runtime.GOMAXPROCS(1)
	var wg sync.WaitGroup
	wg.Add(tasks)
	start := time.Now()
	for i := 0; i < tasks; i++ {
		go func() {
			for j := 0; j < yields; j++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	emit("RESULT", "tasks", tasks, "yields", tasks*yields, "elapsed_ns", elapsed.Nanoseconds())
}

func idle(tasks int, nap time.Duration) {
	rssBase := ownRssKib()
	var asleep, awake int64
	var wg sync.WaitGroup
	wg.Add(tasks)
	start := time.Now()
	for i := 0; i < tasks; i++ {
		go func() {
			atomic.AddInt64(&asleep, 1)
			time.Sleep(nap)
			atomic.AddInt64(&awake, 1)
			wg.Done()
		}()
	}
	spawnTime := time.Since(start)
	for atomic.LoadInt64(&asleep) < int64(tasks) {
		time.Sleep(time.Millisecond)
	}
	readyTime := time.Since(start)
	emit("READY", "spawned", tasks, "woke_early", atomic.LoadInt64(&awake),
		"spawn_ms", float64(spawnTime.Nanoseconds())/1e6,
		"ready_ms", float64(readyTime.Nanoseconds())/1e6, "rss_base_kib", rssBase)
	wg.Wait()
	emit("RESULT", "spawned", tasks, "woke", atomic.LoadInt64(&awake),
		"elapsed_ms", time.Since(start).Milliseconds())
}

// ownRssKib reads VmRSS from /proc/self/status (0 if unreadable).
func ownRssKib() int64 {
	file, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) >= 2 && fields[0] == "VmRSS:" {
			kib, _ := strconv.ParseInt(fields[1], 10, 64)
			return kib
		}
	}
	return 0
}

func listen() net.Listener {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: " + err.Error())
	}
	emit("PORT", "port", listener.Addr().(*net.TCPAddr).Port)
	return listener
}

func echoServer() {
	listener := listen()
	for {
		conn, err := listener.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "go-peer: accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go echoConnection(conn)
	}
}

func echoConnection(conn net.Conn) {
	defer conn.Close()
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF: the client closed
		}
	}
}

func httpServer() {
	listener := listen()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "Hello, World!")
	})
	if err := http.Serve(listener, handler); err != nil {
		fail("serve: " + err.Error())
	}
}
