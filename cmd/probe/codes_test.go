package main

import "github.com/eventswarm/eventswarm/cmd/internal/cli"

// Exit codes, named for the tests (the policy lives in cli).
const (
	exitPass         = cli.ExitPass
	exitFail         = cli.ExitFail
	exitUsage        = cli.ExitUsage
	exitInconclusive = cli.ExitInconclusive
	exitCouldNotRun  = cli.ExitCouldNotRun
)
