package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// BenchmarkAppend measures durable appends (each Append returns after its
// fsync): one appender alone, and 64 concurrent appenders sharing fsyncs
// through group commit.
func BenchmarkAppend(b *testing.B) {
	run := func(b *testing.B, parallel bool) {
		signer, _ := randomKey(b, testOrigin)
		l, _ := openTestLog(b, signer)
		ctx := context.Background()
		entry := synthEntry(1)
		var commits atomic.Int64
		l.store.(*BoltStore).failCommit = func() error { commits.Add(1); return nil }
		b.ReportAllocs()
		b.ResetTimer()
		if parallel {
			b.SetParallelism(32) // 64 goroutines on 2 CPUs
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Append(ctx, entry); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for i := 0; i < b.N; i++ {
				if _, err := l.Append(ctx, entry); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		if l.Size() != uint64(b.N) {
			b.Fatalf("Size = %d after %d appends", l.Size(), b.N)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(b.N)/float64(commits.Load()), "events/commit")
	}
	// The floor: one 4 KiB write and fsync of a plain file in the same
	// directory kind, the cost every durable commit pays at least. The
	// appends are reported against it: events/s divided by fsyncs/s.
	b.Run("fsync-floor", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "floor"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		page := make([]byte, 4096)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := f.WriteAt(page, int64(i%256)*4096); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsyncs/s")
	})
	b.Run("single", func(b *testing.B) { run(b, false) })
	b.Run("batched", func(b *testing.B) { run(b, true) })
}

// verifyBenchEvents is the size of BenchmarkVerify's export. Only the
// benchmark builds it: it takes a few seconds and about 450 MB.
const verifyBenchEvents = 1_000_000

var verifyBench struct {
	once      sync.Once
	data      []byte
	verifiers note.Verifiers
}

// BenchmarkVerify verifies an export of a million synthetic events with
// typical (about 150-byte) payloads and four checkpoints.
func BenchmarkVerify(b *testing.B) {
	verifyBench.once.Do(func() {
		signer, verifiers := testKey(b, testOrigin, "bench")
		const n = verifyBenchEvents
		verifyBench.data = buildExport(b, signer, n, n/4, n/2, 3*n/4, n)
		verifyBench.verifiers = verifiers
	})
	data := verifyBench.data
	opts := VerifyOptions{Verifiers: verifyBench.verifiers, Origin: testOrigin}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sum, err := Verify(bytes.NewReader(data), opts)
		if err != nil {
			b.Fatal(err)
		}
		if sum.Covered != verifyBenchEvents {
			b.Fatalf("Verify = %+v, want %d events covered", sum, verifyBenchEvents)
		}
	}
	b.StopTimer()
	events := float64(b.N) * verifyBenchEvents
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
}
