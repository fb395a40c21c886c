// Package config reads espgw's YAML configuration (via viper) into validated, typed values.
// Every error names the field, the value found and what was expected.
package config

import (
	"github.com/espgw/espgw/model"
)

// Config is the whole daemon configuration.
type Config struct {
	ControlSocket string             // unix socket for the CLI
	Datapath      string             // "auto", "xfrm" or "userspace"
	SaveKeys      string             // directory for Wireshark key files; "" = off
	MetricsListen string             // metrics.listen, "" = off
	EBPF          EBPF               // the ebpf: section
	Connections   []model.Connection // sorted by Name
}
