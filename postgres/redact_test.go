package postgres

import (
	"errors"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		dsn, want string
	}{
		{"postgres://tccd:secret@db:5432/tccd?sslmode=require", "postgres://tccd:xxxxx@db:5432/tccd?sslmode=require"},
		{"postgresql://tccd:p%40ss%2Fw@db/tccd", "postgresql://tccd:xxxxx@db/tccd"},
		{"postgres://tccd@db/tccd?password=secret&sslmode=disable", "postgres://tccd@db/tccd?password=xxxxx&sslmode=disable"},
		{"postgres://tccd:a@b@db/tccd", "postgres://tccd:xxxxx@db/tccd"},
		{"postgres://tccd@db/tccd", "postgres://tccd@db/tccd"},
		{"postgres://db/tccd", "postgres://db/tccd"},
		{"postgres://:secret@db", "postgres://:xxxxx@db"},
		{"host=db user=tccd password=secret dbname=tccd", "host=db user=tccd password=xxxxx dbname=tccd"},
		{"host=db password = 'a \\' secret' dbname=tccd", "host=db password = xxxxx dbname=tccd"},
	}
	for _, tt := range tests {
		if got := Redact(tt.dsn); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

func TestRedactError(t *testing.T) {
	inner := errors.New("cannot parse postgres://u:p%40ss@h: bad, and p@ss itself")
	err := redactError("postgres://u:p%40ss@h/db", inner)
	if strings.Contains(err.Error(), "p%40ss") || strings.Contains(err.Error(), "p@ss") {
		t.Fatalf("error shows the password: %v", err)
	}
	if !errors.Is(err, inner) {
		t.Fatal("the redacted error does not wrap the original")
	}
	if redactError("postgres://u@h/db", inner) != inner {
		t.Fatal("an error without a password to hide was wrapped")
	}
}
