package holds

import (
	"context"
	"flag"

	"github.com/tccd/tccd/examples/internal/examplecmd"
)

// Service is the participant service of a ledger at path, for an example's
// command: `--fund KEY=AMOUNT` (repeatable) creates keys.
func Service(name, path, listen, db string) examplecmd.Service {
	f := funds{}
	return examplecmd.Service{
		Name: name, Listen: listen, DB: db,
		Flags: func(fs *flag.FlagSet) {
			fs.Var(f, "fund", "create a key with an amount, KEY=AMOUNT (repeatable; keys already there are kept)")
		},
		Setup: func(ctx context.Context, env *examplecmd.Env) error {
			l := Ledger{DB: env.DB, Dialect: env.Dialect, MaxTTL: env.MaxTTL}
			if err := l.Migrate(ctx); err != nil {
				return err
			}
			for k, n := range f {
				if err := l.Fund(ctx, k, n); err != nil {
					return err
				}
			}
			p, err := env.Participant(ctx, l.Config(path))
			if err != nil {
				return err
			}
			p.Register(env.Mux)
			env.Mux.HandleFunc("GET /balances", l.ServeBalances)
			return nil
		},
	}
}
