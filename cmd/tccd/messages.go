package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/tccd/tccd/nats"
)

// natsConfig is the nats package's configuration of c, with the secrets
// read from their files. It is the zero Config when no URL is set.
func (c NATSConfig) natsConfig(log *slog.Logger) (nats.Config, error) {
	if c.URL == "" {
		for _, v := range []string{c.CredsFile, c.NKeySeedFile, c.User, c.PasswordFile, c.TokenFile, c.CAFile, c.CertFile, c.KeyFile} {
			if v != "" {
				return nats.Config{}, errors.New("nats-url must be set when other nats-* options are")
			}
		}
		return nats.Config{}, nil
	}
	cfg := nats.Config{
		URL: c.URL, User: c.User, CredsFile: c.CredsFile, NKeySeedFile: c.NKeySeedFile,
		CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile, Logger: log,
	}
	var errs []error
	read := func(name, path string) string {
		if path == "" {
			return ""
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return ""
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			errs = append(errs, fmt.Errorf("%s %s is empty", name, path))
		}
		return s
	}
	cfg.Password = read("nats-password-file", c.PasswordFile)
	cfg.Token = read("nats-token-file", c.TokenFile)
	if c.PasswordFile != "" && c.User == "" {
		errs = append(errs, errors.New("nats-password-file needs nats-user"))
	}
	errs = append(errs, cfg.Validate())
	return cfg, errors.Join(errs...)
}

// initMessages connects to the NATS server when nats-url is set: the
// coordinator then takes messages into transactions. A server that cannot
// be reached at start is an error, as a store would be: better a loud
// start than a coordinator that refuses every message.
func (m *Main) initMessages(ctx context.Context) error {
	cfg, err := m.Config.NATS.natsConfig(m.Log)
	if err != nil || cfg.URL == "" {
		return err
	}
	p, err := nats.Open(ctx, cfg)
	if err != nil {
		return err
	}
	m.nats = p
	m.Log.Info("messages", "broker", "nats", "url", redactNATS(cfg.URL))
	return nil
}

// redactNATS drops any user information from NATS URLs, for the log.
func redactNATS(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		u = strings.TrimSpace(u)
		if at := strings.LastIndex(u, "@"); at >= 0 {
			scheme := ""
			if k := strings.Index(u, "://"); k >= 0 && k < at {
				scheme = u[:k+3]
			}
			u = scheme + "xxxxx@" + u[at+1:]
		}
		parts[i] = u
	}
	return strings.Join(parts, ",")
}
