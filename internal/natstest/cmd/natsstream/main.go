// Command natsstream creates a JetStream stream, as an operator would with
// the nats CLI (nats stream add NAME --subjects SUBJECTS --storage file):
// the docs' snippet test uses it to give a NATS server the stream the
// messages walkthrough publishes to.
//
//	natsstream --server nats://127.0.0.1:4222 --name ORDERS --subjects 'orders.>'
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	server := flag.String("server", "nats://127.0.0.1:4222", "the NATS server")
	name := flag.String("name", "", "the stream's name")
	subjects := flag.String("subjects", "", "the subjects it captures, comma-separated")
	dupes := flag.Duration("dupe-window", 2*time.Minute, "the stream's duplicate window")
	flag.Parse()
	if *name == "" || *subjects == "" {
		fmt.Fprintln(os.Stderr, "natsstream: --name and --subjects are required (see -h)")
		os.Exit(2)
	}
	if err := run(*server, *name, strings.Split(*subjects, ","), *dupes); err != nil {
		fmt.Fprintln(os.Stderr, "natsstream:", err)
		os.Exit(1)
	}
}

func run(server, name string, subjects []string, dupes time.Duration) error {
	nc, err := natsgo.Connect(server, natsgo.Name("natsstream"))
	if err != nil {
		return fmt.Errorf("connect %s: %w", server, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: subjects, Storage: jetstream.FileStorage, Duplicates: dupes,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	return nil
}
