// profdump writes several of its own heap or goroutine profiles while it leaks (or not), for the
// analyzer's tests. The test finds the expected sites by the SITE comments, not by line numbers.
//
//	profdump heap-leak|heap-healthy|goroutine-leak|goroutine-healthy OUTDIR STEPS
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"
)

var retained [][]byte

//go:noinline
func leak(chunks int) {
	for i := 0; i < chunks; i++ {
		retained = append(retained, make([]byte, 1<<20)) // SITE heap-leak
	}
}

//go:noinline
func churn(chunks int) int {
	sum := 0
	for i := 0; i < chunks; i++ {
		b := make([]byte, 1<<20) // SITE heap-healthy
		sum += len(b)
	}
	return sum
}

var never = make(chan int)

//go:noinline
func blocked(started *sync.WaitGroup) {
	started.Done()
	<-never // SITE goroutine-leak
}

//go:noinline
func shortLived(done *sync.WaitGroup) {
	time.Sleep(time.Millisecond) // SITE goroutine-healthy
	done.Done()
}

func write(dir, kind string, step int) {
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pb.gz", kind, step)))
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if kind == "heap" {
		runtime.GC()
		err = pprof.WriteHeapProfile(f)
	} else {
		err = pprof.Lookup("goroutine").WriteTo(f, 0)
	}
	if err != nil {
		panic(err)
	}
}

func main() {
	mode, dir := os.Args[1], os.Args[2]
	steps, err := strconv.Atoi(os.Args[3])
	if err != nil {
		panic(err)
	}
	runtime.MemProfileRate = 1
	for step := 1; step <= steps; step++ {
		switch mode {
		case "heap-leak":
			leak(8)
			write(dir, "heap", step)
		case "heap-healthy":
			churn(8)
			write(dir, "heap", step)
		case "goroutine-leak":
			var started sync.WaitGroup
			for i := 0; i < 200; i++ {
				started.Add(1)
				go blocked(&started)
			}
			started.Wait()
			write(dir, "goroutine", step)
		case "goroutine-healthy":
			var done sync.WaitGroup
			for i := 0; i < 200; i++ {
				done.Add(1)
				go shortLived(&done)
			}
			done.Wait()
			write(dir, "goroutine", step)
		default:
			panic("unknown mode " + mode)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
