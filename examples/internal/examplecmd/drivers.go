package examplecmd

// The examples' commands open SQLite or PostgreSQL (package exampledb).
import (
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)
