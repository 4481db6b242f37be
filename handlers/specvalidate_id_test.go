package handlers

import (
	"strings"
	"testing"
)

// specReservationID checks id against openapi.yaml's ReservationID schema.
func specReservationID(t testing.TB, id string) bool {
	t.Helper()
	doc, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	return doc.Components.Schemas["ReservationID"].Value.VisitJSON(id) == nil
}

// The hand-written reservation id check accepts exactly what the spec's
// ReservationID schema accepts.
func TestReservationIDFollowsTheSpec(t *testing.T) {
	ids := []string{"", "0", strings.Repeat("0f", 16), strings.Repeat("0F", 16), strings.Repeat("0f", 15),
		strings.Repeat("0f", 16) + "0", strings.Repeat("zz", 16), strings.Repeat("a", 31) + "g",
		strings.Repeat("9", 32), strings.Repeat("f", 32), strings.Repeat("é", 16), strings.Repeat("0f", 15) + "\n0"}
	for _, id := range ids {
		if got, want := validReservationID(id), specReservationID(t, id); got != want {
			t.Errorf("validReservationID(%q) = %v, the spec says %v", id, got, want)
		}
	}
}

func FuzzReservationIDFollowsTheSpec(f *testing.F) {
	f.Add(strings.Repeat("0f", 16))
	f.Add(strings.Repeat("0F", 16))
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := validReservationID(id), specReservationID(t, id); got != want {
			t.Errorf("validReservationID(%q) = %v, the spec says %v", id, got, want)
		}
	})
}

func BenchmarkValidReservationID(b *testing.B) {
	id := strings.Repeat("0f", 16)
	b.Run("loop", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !validReservationID(id) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("spec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !specReservationID(b, id) {
				b.Fatal("refused")
			}
		}
	})
}
