package sheet

import (
	"flag"
	"fmt"
	"testing"

	"github.com/xuri/excelize/v2"
)

var update = flag.Bool("update", false, "rewrite the hand-built test workbooks in testdata")

// cell is one value of a hand-built workbook; to, if set, is the end of a merged range.
type cell struct{ at, to, v string }

// partnerWorkbooks are drawn cell by cell the way partners fill their forms, not by Export.
var partnerWorkbooks = map[string]struct {
	sheet string
	cells []cell
}{
	// An English bank form: notes in column B, the values in C (bank) and D (customer),
	// merged across both where they must agree, numbered sections, blank rows.
	"bank-en.xlsx": {"Sheet1", []cell{
		{"A1", "D1", "Example Bank plc — Site-to-Site VPN Request Form"},
		{"A3", "", "Item"}, {"B3", "", "Notes"}, {"C3", "", "Example Bank"}, {"D3", "", "Customer"},
		{"A5", "D5", "1. Peer gateway"},
		{"A6", "", "Public IP address"}, {"C6", "", "203.0.113.5"}, {"D6", "", "198.51.100.10"},
		{"A7", "", "Device"}, {"C7", "", "Juniper SRX 345"},
		{"A9", "D9", "2. ISAKMP / IKE (Phase 1)"},
		{"A10", "", "IKE Version"}, {"C10", "", "IKEv1"}, {"D10", "", "IKEv1"},
		{"A11", "", "Authentication"}, {"B11", "", "PSK exchanged by phone"}, {"C11", "D11", "Pre-shared key"},
		{"A12", "", "Encryption Algorithm"}, {"C12", "D12", "AES-256"},
		{"A13", "", "Hash Algorithm"}, {"C13", "D13", "SHA2-256"},
		{"A14", "", "DH Group"}, {"C14", "D14", "DH14"},
		{"A15", "", "Lifetime"}, {"C15", "D15", "24h"},
		{"A16", "", "Exchange Mode"}, {"C16", "D16", "Main"},
		{"A17", "", "NAT-T"}, {"C17", "D17", "Enabled"},
		{"A19", "D19", "3. IPSec (Phase 2)"},
		{"A20", "", "Transform / Protocol"}, {"C20", "D20", "ESP"},
		{"A21", "", "Encryption Algorithm"}, {"C21", "D21", "aes256-cbc"},
		{"A22", "", "Authentication Algorithm"}, {"C22", "D22", "HMAC-SHA-256"},
		{"A23", "", "Perfect Forward Secrecy"}, {"C23", "D23", "PFS: yes (group 14)"},
		{"A24", "", "Lifetime"}, {"C24", "D24", "3600 seconds / 4608000 KB"},
		{"A26", "D26", "4. Encryption Domain"},
		{"A27", "", "Bank networks"}, {"B27", "", "API servers"}, {"C27", "", "10.50.0.0/16\n10.51.0.0/24"},
		{"A28", "", "Customer network"}, {"B28", "", "NAT'ed service IP"}, {"D28", "", "10.10.1.1"},
	}},
	// A Russian form: "Наименование параметра | Значение (Банк) | Значение (Заказчик) |
	// Комментарий", a netmask instead of a prefix, a note in parentheses.
	"bank-ru.xlsx": {"Лист1", []cell{
		{"A1", "D1", "Параметры IPSec VPN"},
		{"A2", "", "Наименование параметра"}, {"B2", "", "Значение (Банк)"}, {"C2", "", "Значение (Заказчик)"}, {"D2", "", "Комментарий"},
		{"A4", "", "IP-адрес шлюза"}, {"B4", "", "192.0.2.2"}, {"C4", "", "192.0.2.1"},
		{"A5", "D5", "ISAKMP"},
		{"A6", "", "Режим обмена"}, {"B6", "", "Основной (Main)"}, {"C6", "", "Основной (Main)"},
		{"A7", "", "Аутентификация"}, {"B7", "C7", "Общий ключ (PSK)"}, {"D7", "", "передаётся по телефону"},
		{"A8", "", "Шифрование"}, {"B8", "C8", "TripleDES"},
		{"A9", "", "Хэш"}, {"B9", "C9", "HMAC-SHA1"},
		{"A10", "", "Группа DH"}, {"B10", "C10", "modp1024"},
		{"A11", "", "Время жизни"}, {"B11", "C11", "86400 секунд"},
		{"A12", "", "NAT-T"}, {"B12", "", "Нет"}, {"C12", "", "Нет"},
		{"A13", "", "DPD"}, {"B13", "", "Нет"}, {"C13", "", "Нет"},
		{"A15", "D15", "IPSec"},
		{"A16", "", "Шифрование"}, {"B16", "C16", "3des-cbc"},
		{"A17", "", "Хэш"}, {"B17", "C17", "SHA-1"},
		{"A18", "", "PFS"}, {"B18", "", "Нет"}, {"C18", "", "Нет"},
		{"A19", "", "Время жизни"}, {"B19", "", "8 часов"}, {"C19", "", "28800 сек"},
		{"A21", "D21", "Домены шифрования"},
		{"A22", "", "Локальная сеть банка"}, {"B22", "", "10.20.0.0 255.255.255.0"},
		{"A23", "", "Сеть заказчика"}, {"C23", "", "10.10.1.1/32 (сервисный адрес)"},
	}},
}

// buildPartnerWorkbook writes one hand-built workbook.
func buildPartnerWorkbook(name string) error {
	wb := partnerWorkbooks[name]
	f := excelize.NewFile()
	defer f.Close()
	if err := f.SetSheetName("Sheet1", wb.sheet); err != nil {
		return err
	}
	bold, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}})
	if err != nil {
		return err
	}
	for _, c := range wb.cells {
		if err := f.SetCellStr(wb.sheet, c.at, c.v); err != nil {
			return err
		}
		if c.to != "" {
			if err := f.MergeCell(wb.sheet, c.at, c.to); err != nil {
				return err
			}
			if c.at[0] == 'A' {
				f.SetCellStyle(wb.sheet, c.at, c.to, bold)
			}
		}
	}
	f.SetColWidth(wb.sheet, "A", "A", 30)
	f.SetColWidth(wb.sheet, "B", "D", 24)
	return f.SaveAs("testdata/" + name)
}

func TestMain(m *testing.M) {
	flag.Parse()
	if *update {
		for name := range partnerWorkbooks {
			if err := buildPartnerWorkbook(name); err != nil {
				panic(fmt.Sprintf("%s: %v", name, err))
			}
		}
	}
	m.Run()
}
