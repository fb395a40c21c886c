package sheet

import "strings"

// section is a part of the sheet.
type section uint8

const (
	secGeneral section = iota
	secPhase1
	secPhase2
	secDomains
)

// field is a parameter a row may hold.
type field uint8

const (
	fNone field = iota
	fPeerIP
	fIdentity
	fVersion
	fMode
	fAuth
	fEncryption
	fHash
	fGroup
	fLifetime
	fNATT
	fDPD
	fProtocol
	fPFS
	fDomain
	fTunnelTable
	fPRF // IKEv2's pseudo-random function
)

var fieldNames = map[field]string{
	fPeerIP: "public IP", fIdentity: "IKE identity", fVersion: "IKE version", fMode: "mode", fAuth: "authentication",
	fEncryption: "encryption", fHash: "hash", fGroup: "DH group", fLifetime: "lifetime", fNATT: "NAT traversal",
	fDPD: "DPD", fProtocol: "protocol", fPFS: "PFS", fDomain: "encryption domain", fPRF: "PRF",
}

// has reports whether normalized text n contains any of the words.
func has(n string, words ...string) bool {
	for _, w := range words {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// hasWord reports whether normalized text n contains any of the words as whole words.
func hasWord(n string, words ...string) bool {
	n = " " + n + " "
	for _, w := range words {
		if strings.Contains(n, " "+w+" ") {
			return true
		}
	}
	return false
}

// sectionOf recognizes a section header: "Phase 1 (IKE)", "ISAKMP", "Фаза 2 (IPSec)",
// "Encryption domains", "Домены шифрования", "General", "Общие сведения".
func sectionOf(label string) (section, bool) {
	n := norm(label)
	switch {
	case has(n, "phase 1", "phase i ", "фаза 1", "1 фаза", "первая фаза", "phase one"):
		return secPhase1, true
	case has(n, "phase 2", "phase ii", "фаза 2", "2 фаза", "вторая фаза", "phase two"):
		return secPhase2, true
	case has(n, "domain", "домен", "tunnels", "туннели", "protected networks", "защищаемые сети", "networks", "сети", "traffic selectors", "proxy id"):
		return secDomains, true
	case has(n, "ipsec", "ip sec", "quick mode", "transform set") || hasWord(n, "esp"):
		return secPhase2, true
	case has(n, "isakmp", "main mode", "ike sa") || hasWord(n, "ike", "ikev1", "ikev2"):
		return secPhase1, true
	case has(n, "general", "общ", "peer", "gateway", "шлюз", "contact", "контакт"):
		return secGeneral, true
	}
	return 0, false
}

// fieldOf recognizes a parameter label within section sec.
func fieldOf(sec section, label string) field {
	n := norm(label)
	switch {
	case n == "":
		return fNone
	case has(n, "pfs", "perfect forward"):
		return fPFS
	case has(n, "dpd", "dead peer", "keepalive", "keep alive"):
		return fDPD
	case hasWord(n, "nat", "natt", "nat t", "nat traversal"):
		return fNATT
	case has(n, "lifetime", "life time", "время жизни", "sa life", "срок жизни", "rekey", "время действия"):
		return fLifetime
	case has(n, "diffie", "диффи", "dh ", "modp") || strings.HasPrefix(n, "dh") || has(n, "group", "групп"):
		return fGroup
	case has(n, "version", "верси"):
		return fVersion
	case has(n, "identity", "identifier", "идентификатор", "ike id", "peer id", "local id"):
		return fIdentity
	case has(n, "subnet", "network", "domain", "подсеть", "сеть", "домен", "proxy id", "traffic selector", "protected", "хост") || hasWord(n, "lan", "host", "hosts"):
		return fDomain
	case hasWord(n, "ip", "address", "адрес") || has(n, "ip адрес"):
		return fPeerIP
	case has(n, "encryption", "шифрован", "cipher", "шифр"):
		return fEncryption
	case has(n, "prf", "pseudo random", "pseudorandom", "псевдослучайн") && !has(n, "hash", "хеш", "хэш", "integrity", "целостн"):
		return fPRF
	case has(n, "hash", "хеш", "хэш", "integrity", "целостн"):
		return fHash
	case has(n, "authentication", "аутентификац", "auth"):
		if sec == secPhase2 {
			return fHash
		}
		if has(n, "algorithm", "алгоритм") && !has(n, "method", "метод") {
			return fHash
		}
		return fAuth
	case has(n, "mode", "режим", "exchange"):
		return fMode
	case has(n, "protocol", "протокол", "transform", "encapsulation", "инкапсуляц"):
		return fProtocol
	}
	return fNone
}

// column roles in the header row.
var (
	labelHeads = []string{"parameter", "параметр", "item", "наименование", "description", "описание", "setting", "настройка", "field", "поле"}
	noteHeads  = []string{"note", "comment", "remark", "примечан", "комментар", "замечан"}
	ourHeads   = []string{"our", "your", "local", "customer", "client", "клиент", "заказчик", "наш", "this side", "this gateway", "espgw", "контрагент"}
)

// translit spells Cyrillic in Latin letters for connection names.
var translit = map[rune]string{
	'а': "a", 'б': "b", 'в': "v", 'г': "g", 'д': "d", 'е': "e", 'ё': "e", 'ж': "zh", 'з': "z", 'и': "i", 'й': "y",
	'к': "k", 'л': "l", 'м': "m", 'н': "n", 'о': "o", 'п': "p", 'р': "r", 'с': "s", 'т': "t", 'у': "u", 'ф': "f",
	'х': "kh", 'ц': "ts", 'ч': "ch", 'ш': "sh", 'щ': "shch", 'ъ': "", 'ы': "y", 'ь': "", 'э': "e", 'ю': "yu", 'я': "ya",
}

// nameFrom makes a connection name from a column header: "МегаТелеком" → "megatelekom",
// "Partner: MegaTelecom" → "megatelecom". "" if nothing usable is left.
func nameFrom(head string) string {
	if i, j := strings.IndexByte(head, '('), strings.LastIndexByte(head, ')'); i >= 0 && j > i && validName(head[i+1:j]) {
		return head[i+1 : j] // "Partner (megatelecom)", as Export writes it
	}
	n := norm(head)
	for _, w := range []string{"partner", "партнер", "side", "сторона", "value", "значение", "fills in", "заполняет", "peer", "remote", "their", "bank", "банк"} {
		n = strings.ReplaceAll(n, w, " ")
	}
	var b strings.Builder
	for _, r := range strings.Join(strings.Fields(n), "-") {
		if t, ok := translit[r]; ok {
			b.WriteString(t)
		} else {
			b.WriteRune(r)
		}
	}
	s := b.String()
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Trim(s, "-")
}
