// Command go-peer is the Go peer of corun's side-by-side benchmark suite: the same
// scenarios as the Rust peers, written as idiomatic Go (goroutines, channels, net, net/http),
// on Go's default runtime settings (GOMAXPROCS = the CPUs this process may run on).
//
//	go-peer spawn-join  [--tasks N] [--batch B]
//	go-peer ping-pong   [--round-trips N]
//	go-peer idle        [--tasks N] [--sleep-ms MS]
//	go-peer echo-server
//	go-peer http-server
//
// Output follows the suite's line protocol (bench/src/protocol.rs): lines
// "TAG key=value ...", with RESULT, PORT and READY tags.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: go-peer spawn-join|ping-pong|idle|echo-server|http-server [options]")
	}
	command := os.Args[1]
	flags := flag.NewFlagSet(command, flag.ExitOnError)
	tasks := flags.Int("tasks", 100000, "number of tasks")
	batch := flags.Int("batch", 10000, "tasks spawned before joining")
	roundTrips := flags.Int("round-trips", 100000, "ping-pong round trips")
	sleepMs := flags.Int("sleep-ms", 5000, "how long each idle task sleeps")
	if err := flags.Parse(os.Args[2:]); err != nil {
		fail(err.Error())
	}
	switch command {
	case "spawn-join":
		spawnJoin(*tasks, *batch)
	case "ping-pong":
		pingPong(*roundTrips)
	case "idle":
		idle(*tasks, time.Duration(*sleepMs)*time.Millisecond)
	case "echo-server":
		echoServer()
	case "http-server":
		httpServer()
	default:
		fail("unknown scenario " + command)
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
