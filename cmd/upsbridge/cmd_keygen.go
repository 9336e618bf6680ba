package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/upsbridge/upsbridge/bridge/signing"
)

func init() {
	register(command{
		Name:    "keygen",
		Usage:   "keygen -o FILE",
		Summary: "make an Ed25519 key pair for signed state (FILE private, FILE.pub public)",
		Run:     cmdKeygen,
	})
}

func cmdKeygen(_ context.Context, args []string, io stdio) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	out := fs.String("o", "", "private key file to write (the public key goes to FILE.pub)")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if *out == "" {
		fmt.Fprintln(io.Stderr, "upsbridge keygen: -o FILE is required")
		return exitConfig
	}
	pub, priv, err := signing.GenerateKey()
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge keygen: %v\n", err)
		return exitFail
	}
	privPEM, err := signing.EncodePrivateKey(priv)
	if err == nil {
		var pubPEM []byte
		if pubPEM, err = signing.EncodePublicKey(pub); err == nil {
			// O_EXCL: never overwrite a key, which would silently break
			// every agent that trusts the old one.
			if err = writeNew(*out, privPEM, 0o600); err == nil {
				err = writeNew(*out+".pub", pubPEM, 0o644)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge keygen: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(io.Stdout, "private key: %s (bridge.signing_key_file)\npublic key:  %s.pub (agent.public_key_file)\n", *out, *out)
	return exitOK
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; not overwriting a key", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
