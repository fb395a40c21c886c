package espgwtest

import (
	"io"
	"text/template"
)

// Config is the part of espgw's YAML configuration the tests vary. Start adds control_socket
// and save_keys.
type Config struct {
	Datapath    string // auto, xfrm or userspace; "" = auto
	Metrics     string // metrics.listen, e.g. 127.0.0.1:9814; "" = none
	Connections []Connection
	NoEBPF      bool // ebpf: {enabled: false}

	// How the daemon runs, for measurements: --log-level ("" = debug), no save_keys, and
	// --pprof (an address in the namespace; "" = none).
	LogLevel   string
	NoSaveKeys bool
	PProf      string
}

// Connection is one entry of connections:.
type Connection struct {
	Name                      string
	Local, Remote             string // local_address, remote_address
	LocalID, RemoteID         string // local_id, remote_id, e.g. gw.example.net or keyid:bank; "" = the address
	PSK                       string
	IKEVersion                int    // ike.version: 2 for IKEv2; 0 = IKEv1
	Mode                      string // ike.mode (IKEv1): main or aggressive; "" = main
	IKEProposal               string // ike.proposals in the version's syntax, e.g. 3des-sha1-modp1024
	IKELifetime               string // ike.lifetime, e.g. 60s; "" = 1h
	NATTraversal              string // auto, force or off; "" = auto
	ServiceAddress, Interface string // service_address: address (CIDR) and interface; "" = none
	DPDDelay                  string // ike.dpd_delay, e.g. 2s; "" = off
	DPDTimeout                string // ike.dpd_timeout, e.g. 6s; "" = 30s
	CookieThreshold           string // ike.cookie_threshold (IKEv2), e.g. 0; "" = espgw's default
	FragmentSize              string // ike.fragment_size (IKEv2), e.g. 500; "" = espgw's default
	Tunnels                   []Tunnel
}

// Tunnel is one entry of a connection's tunnels:.
type Tunnel struct {
	Name                      string
	LocalSubnet, RemoteSubnet string
	ESPProposal               string
	Lifetime                  string // e.g. 15s; "" = 30m
	Start                     string // on-demand, always or manual
}

var configTemplate = template.Must(template.New("espgw.yaml").Parse(`# written by internal/testutil/espgwtest
control_socket: {{.Socket}}
{{- if not .NoSaveKeys}}
save_keys: {{.KeyDir}}
{{- end}}
datapath: {{or .Datapath "auto"}}
{{- if .Metrics}}
metrics: {listen: "{{.Metrics}}"}
{{- end}}
{{- if .NoEBPF}}
ebpf: {enabled: false}
{{- end}}
connections:
{{- range .Connections}}
  {{.Name}}:
    local_address: {{.Local}}
    remote_address: {{.Remote}}
    psk: {{printf "%q" .PSK}}
{{- if .LocalID}}
    local_id: {{printf "%q" .LocalID}}
{{- end}}
{{- if .RemoteID}}
    remote_id: {{printf "%q" .RemoteID}}
{{- end}}
{{- if .ServiceAddress}}
    service_address: {address: {{.ServiceAddress}}, interface: {{.Interface}}}
{{- end}}
    ike:
{{- if eq .IKEVersion 2}}
      version: 2
{{- else}}
      mode: {{or .Mode "main"}}
{{- end}}
      nat_traversal: {{or .NATTraversal "auto"}}
      proposals: [{{.IKEProposal}}]
      lifetime: {{or .IKELifetime "1h"}}
{{- if .DPDDelay}}
      dpd_delay: {{.DPDDelay}}
{{- end}}
{{- if .DPDTimeout}}
      dpd_timeout: {{.DPDTimeout}}
{{- end}}
{{- if .CookieThreshold}}
      cookie_threshold: {{.CookieThreshold}}
{{- end}}
{{- if .FragmentSize}}
      fragment_size: {{.FragmentSize}}
{{- end}}
    tunnels:
{{- range .Tunnels}}
      {{.Name}}:
        local_subnet: {{.LocalSubnet}}
        remote_subnet: {{.RemoteSubnet}}
        proposals: [{{.ESPProposal}}]
        lifetime: {{or .Lifetime "30m"}}
        start: {{.Start}}
{{- end}}
{{- end}}
`))

// write renders cfg as espgw.yaml with the given control socket and save_keys directory.
func (cfg Config) write(w io.Writer, socket, keyDir string) error {
	return configTemplate.Execute(w, struct {
		Config
		Socket, KeyDir string
	}{cfg, socket, keyDir})
}
