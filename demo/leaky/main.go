// Command leaky is timerscope's demo target: a small "service" with the timer leaks found in
// real Go services. It serves fake requests forever; `cargo xtask demo` records it for 10 s.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

var handled atomic.Int64

// handleRequest waits for a result with a timeout. The time.After timer stays pending for 30 s
// after every request that finished in time: the classic time.After-in-a-loop leak.
func handleRequest(results <-chan int) {
	select {
	case r := <-results:
		handled.Add(int64(r))
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "request timed out")
	}
}

// watchConnection starts a keep-alive ticker per connection and never stops it.
func watchConnection(id int) {
	ticker := time.NewTicker(time.Minute)
	go func() {
		for range ticker.C {
			fmt.Fprintln(os.Stderr, "keep-alive", id)
		}
	}()
}

// callBackend sets a deadline for a backend call but never calls cancel: the context's timer
// (an AfterFunc) keeps the context alive until the deadline.
func callBackend() error {
	ctx, _ := context.WithTimeout(context.Background(), 2*time.Minute)
	return ctx.Err()
}

// retryWithBackoff is the healthy pattern: its timer is stopped when it is no longer needed.
func retryWithBackoff() {
	timer := time.NewTimer(50 * time.Millisecond)
	defer timer.Stop()
	select {
	case <-timer.C:
	default:
	}
}

func main() {
	interval := flag.Duration("interval", 5*time.Millisecond, "time between fake requests")
	flag.Parse()
	fmt.Printf("leaky: pid %d serving fake requests every %v\n", os.Getpid(), *interval)
	for i := 0; ; i++ {
		results := make(chan int, 1)
		results <- 1
		handleRequest(results)
		if i%10 == 0 {
			watchConnection(i)
		}
		if i%4 == 0 {
			_ = callBackend()
		}
		retryWithBackoff()
		time.Sleep(*interval)
	}
}
