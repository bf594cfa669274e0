package main

import (
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"ping-pong", "--bogus", "--help"}} {
		if _, _, err := parseArgs(args); err != errHelp {
			t.Errorf("%q: %v, want help", args, err)
		}
	}
	command, opts, err := parseArgs([]string{"spawn-join", "--tasks", "10", "--batch=5"})
	if err != nil || command != "spawn-join" || opts.tasks != 10 || opts.batch != 5 {
		t.Errorf("good values: %q %+v %v", command, opts, err)
	}
	if _, opts, _ := parseArgs([]string{"ping-pong"}); opts.roundTrips != 100000 {
		t.Errorf("default round trips: %d", opts.roundTrips)
	}
	command, opts, err = parseArgs([]string{"yield", "--yields", "7"})
	if err != nil || command != "yield" || opts.tasks != 1 || opts.yields != 7 {
		t.Errorf("yield: %q %+v %v", command, opts, err)
	}
	for _, bad := range []struct {
		args []string
		what string
	}{
		{[]string{}, "no command"},
		{[]string{"--bogus"}, "`--bogus`"},
		{[]string{"bogus"}, "`bogus`"},
		{[]string{"ping-pong", "--bogus"}, "-bogus"},
		{[]string{"ping-pong", "--tasks", "3"}, "-tasks"},
		{[]string{"ping-pong", "--round-trips", "x"}, `"x"`},
		{[]string{"ping-pong", "--round-trips", "-1"}, `"-1"`},
		{[]string{"ping-pong", "--round-trips"}, "-round-trips"},
		{[]string{"ping-pong", "--round-trips", "1", "--round-trips", "2"}, "twice"},
		{[]string{"ping-pong", "extra"}, "`extra`"},
	} {
		_, _, err := parseArgs(bad.args)
		if err == nil || err == errHelp || !strings.Contains(err.Error(), bad.what) {
			t.Errorf("%q: %v, want an error naming %s", bad.args, err, bad.what)
		}
	}
}
