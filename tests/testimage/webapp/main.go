// Command webapp is the test image of the integration tests: an HTTP server
// (no arguments) that answers with its hostname (and at /client with the
// client's address), plus client modes run with kubectl exec: `webapp get
// URL`, `webapp resolve NAME`, `webapp cat FILE` and `webapp write FILE TEXT`;
// `webapp burn` spins one CPU; `webapp eat MIB` takes MIB MiB of memory
// (touching every page, a MiB every 10 ms) and then sleeps: a memory hog.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "eat" {
		eat(os.Args[2])
		return
	}
	if len(os.Args) == 2 && os.Args[1] == "burn" {
		for { // CPU load for the HorizontalPodAutoscaler test, until killed
		}
	}
	if len(os.Args) == 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		switch os.Args[1] {
		case "get":
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, os.Args[2], nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			fmt.Print(string(body))
			return
		case "cat": // a file's content (volume tests)
			b, err := os.ReadFile(os.Args[2])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Print(string(b))
			return
		case "resolve":
			addrs, err := net.DefaultResolver.LookupHost(ctx, os.Args[2])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Println(addrs[0])
			return
		}
	}
	if len(os.Args) == 4 && os.Args[1] == "write" { // webapp write FILE TEXT
		if err := os.WriteFile(os.Args[2], []byte(os.Args[3]), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "hello from %s\n", host) })
	// /client: the address the connection came from (source-IP tests).
	http.HandleFunc("/client", func(w http.ResponseWriter, r *http.Request) {
		ip, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintln(w, ip)
	})
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// eat takes mib MiB of memory, a MiB at a time, and keeps it.
func eat(mib string) {
	n, err := strconv.Atoi(mib)
	if err != nil {
		fmt.Fprintln(os.Stderr, "eat: bad MiB:", mib)
		os.Exit(2)
	}
	var held [][]byte
	for i := range n {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i)
		}
		held = append(held, b)
		if i%100 == 0 {
			fmt.Printf("holding %d MiB\n", i)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("holding %d MiB\n", len(held))
	select {}
}
