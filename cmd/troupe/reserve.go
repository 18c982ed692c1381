package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/troupe-lab/troupe/server"
)

func init() {
	commandHelps["reserve"] = commandHelp{
		synopsis: "troupe reserve BOARD [--for 2h] [--server URL] [--token T]",
		about:    "Reserve a board of the server's lab for manual work (admin token): the scheduler starts no job\\non it until the reservation ends or is released; waiting jobs say who holds it.",
		example:  "troupe reserve bbb-03 --for 30m",
	}
	commandHelps["release"] = commandHelp{
		synopsis: "troupe release BOARD [--server URL] [--token T]",
		about:    "End a board's reservation (admin token).",
		example:  "troupe release bbb-03",
	}
}

// cmdReserve is `troupe reserve BOARD [--for 2h]`.
func cmdReserve(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("reserve", stderr)
	d := fs.Duration("for", time.Hour, "how long (at most 168h)")
	connect := clientFlags(fs)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(fs, "want BOARD")
	}
	if *d <= 0 {
		return usageError(fs, "--for must be > 0")
	}
	return deviceOp(connect(), fs.Arg(0), "reserve", map[string]string{"for": d.String()}, stdout, stderr)
}

// cmdRelease is `troupe release BOARD`.
func cmdRelease(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("release", stderr)
	connect := clientFlags(fs)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(fs, "want BOARD")
	}
	return deviceOp(connect(), fs.Arg(0), "release", nil, stdout, stderr)
}

// deviceOp posts an operator command on board to the server and prints
// the board's state from the answer.
func deviceOp(c *client, board, op string, body map[string]string, stdout, stderr io.Writer) int {
	data, err := json.Marshal(body)
	if err != nil {
		return exitFor(stderr, err)
	}
	if body == nil {
		data = nil
	}
	var res server.Reservation
	if err := c.do("POST", "/api/v1/devices/"+url.PathEscape(board)+"/"+op, "application/json", data, &res); err != nil {
		return exitFor(stderr, err)
	}
	switch {
	case op == "power":
		fmt.Fprintf(stdout, "%s: %s\n", res.Name, res.Power)
	case res.ReservedBy != "":
		fmt.Fprintf(stdout, "%s: reserved by %s until %s\n", res.Name, res.ReservedBy, res.ReservedUntil.Local().Format(time.DateTime))
	default:
		fmt.Fprintf(stdout, "%s: not reserved\n", res.Name)
	}
	return exitOK
}
