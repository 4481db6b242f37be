package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/storage"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func TestCheckGrantsFlagsAForgedDoubleGrant(t *testing.T) {
	grants := []*Grant{
		{Pool: 1, Hash: "u1", ID: "r1", Fence: 1, From: at(0), Until: at(10)},
		// Granted while r1's holder had not yet sent its release.
		{Pool: 1, Hash: "u1", ID: "r2", Fence: 2, From: at(5), Until: at(20)},
	}
	dups := CheckGrants(grants)
	if len(dups) != 1 || dups[0].Hash != "u1" || !strings.Contains(dups[0].A, "r1") || !strings.Contains(dups[0].B, "r2") {
		t.Fatalf("CheckGrants = %v, want r1 and r2 on u1", dups)
	}
}

func TestCheckGrantsAcceptsHandovers(t *testing.T) {
	grants := []*Grant{
		{Pool: 1, Hash: "u1", ID: "r1", Fence: 1, From: at(0), Until: at(10)},
		// Its answer arrived after r1's release was sent: the release may have
		// been applied at once.
		{Pool: 1, Hash: "u1", ID: "r2", Fence: 2, From: at(11), Until: at(20)},
		{Pool: 1, Hash: "u1", ID: "r3", Fence: 3, From: at(20), Until: at(30)},
		// The same hash in another pool, and another hash at the same time.
		{Pool: 2, Hash: "u1", ID: "r4", Fence: 1, From: at(5)},
		{Pool: 1, Hash: "u2", ID: "r5", Fence: 4, From: at(5)},
		// Two UTXOs of one reservation.
		{Pool: 1, Hash: "u3", ID: "r6", Fence: 5, From: at(5), Until: at(6)},
		{Pool: 1, Hash: "u4", ID: "r6", Fence: 5, From: at(5), Until: at(6)},
	}
	if dups := CheckGrants(grants); len(dups) != 0 {
		t.Fatalf("CheckGrants = %v, want none", dups)
	}
}

func TestCheckGrantsFindsAnOverlapBehindAShorterHold(t *testing.T) {
	grants := []*Grant{
		{Pool: 1, Hash: "u", ID: "long", Fence: 1, From: at(0)}, // never released
		{Pool: 1, Hash: "u", ID: "short", Fence: 2, From: at(1), Until: at(2)},
		{Pool: 1, Hash: "u", ID: "late", Fence: 3, From: at(100), Until: at(101)},
	}
	dups := CheckGrants(grants)
	if len(dups) != 2 {
		t.Fatalf("CheckGrants = %v, want short and late against long", dups)
	}
	for _, d := range dups {
		if !strings.Contains(d.A, "long") {
			t.Errorf("%v: want long as the first holder", d)
		}
	}
}

func TestCheckGrantsFlagsTwoLegacyGrantsAndAReusedFence(t *testing.T) {
	legacy := []*Grant{
		{Scenario: "d", Client: 1, Pool: 1, Hash: "u", From: at(0), Until: at(60_000)},
		{Scenario: "d", Client: 2, Pool: 1, Hash: "u", From: at(30_000), Until: at(90_000)},
	}
	if dups := CheckGrants(legacy); len(dups) != 1 || !strings.Contains(dups[0].A, "client 1") {
		t.Errorf("legacy: CheckGrants = %v, want one", dups)
	}
	fences := []*Grant{
		{Pool: 1, Hash: "a", ID: "r1", Fence: 7, From: at(0), Until: at(1)},
		{Pool: 1, Hash: "b", ID: "r2", Fence: 7, From: at(5), Until: at(6)},
	}
	if dups := CheckGrants(fences); len(dups) != 1 || !strings.Contains(dups[0].Detail, "fence 7") {
		t.Errorf("fences: CheckGrants = %v, want the reused fence", dups)
	}
}

func row(id string, fence int64, state string, created, expires, updated int, hashes ...string) JournalRow {
	return JournalRow{ID: id, Pool: 1, Fence: fence, Hashes: hashes, State: state,
		CreatedAt: at(created), ExpiresAt: at(expires), UpdatedAt: at(updated)}
}

func TestCheckJournalFlagsAForgedDoubleGrant(t *testing.T) {
	rows := []JournalRow{
		row("r1", 1, storage.ResReleased, 0, 60_000, 100, "u1", "u2"),
		// Created while r1 still held u2 (r1 was released at 100 ms).
		row("r2", 2, storage.ResHeld, 50, 60_050, 50, "u2"),
	}
	dups := CheckJournal(rows, 5*time.Millisecond)
	if len(dups) != 1 || dups[0].Hash != "u2" || !strings.Contains(dups[0].A, "r1") || !strings.Contains(dups[0].B, "r2") {
		t.Fatalf("CheckJournal = %v, want r1 and r2 on u2", dups)
	}
}

func TestCheckJournalAcceptsWhatLockmgrWrites(t *testing.T) {
	rows := []JournalRow{
		// Released: the journal's write (100) comes before Redis frees the
		// UTXO, and the next grant (created, Redis clock in ms) after it.
		row("r1", 1, storage.ResReleased, 0, 60_000, 100, "u1"),
		row("r2", 2, storage.ResExpired, 100, 200, 5_000, "u1"), // expired at 200, journaled later
		row("r3", 3, storage.ResSpent, 200, 1_800_000, 900, "u1"),
		// Within the tolerance: Redis's clock has millisecond resolution.
		row("r4", 1, storage.ResReleased, 0, 60_000, 10, "u2"),
		row("r5", 2, storage.ResHeld, 7, 60_007, 7, "u2"),
		// Out of fence order in the input.
		row("r7", 4, storage.ResHeld, 30, 60_000, 30, "u3"),
		row("r6", 3, storage.ResReleased, 10, 60_000, 20, "u3"),
	}
	if dups := CheckJournal(rows, 5*time.Millisecond); len(dups) != 0 {
		t.Fatalf("CheckJournal = %v, want none", dups)
	}
}

func TestCheckJournalComparesWithTheLongestEarlierHold(t *testing.T) {
	rows := []JournalRow{
		row("live", 1, storage.ResSubmitted, 0, 1_800_000, 10, "u"),
		row("quick", 2, storage.ResReleased, 20, 60_000, 30, "u"),
		row("next", 3, storage.ResHeld, 40, 60_000, 40, "u"),
	}
	dups := CheckJournal(rows, 5*time.Millisecond)
	if len(dups) != 2 {
		t.Fatalf("CheckJournal = %v, want quick and next against live", dups)
	}
	for _, d := range dups {
		if !strings.Contains(d.A, "live") {
			t.Errorf("%v: want live as the first holder", d)
		}
	}
}

func TestCheckJournalFlagsHoldingsThatDisagreeWithTheHashes(t *testing.T) {
	r1 := row("r1", 1, storage.ResHeld, 0, 60_000, 0, "u1", "u2")
	r1.Holdings = []string{"u2", "u1"} // the same set, in another order
	r2 := row("r2", 2, storage.ResHeld, 10, 60_000, 10, "u3")
	r2.Holdings = []string{} // reservation_utxos has nothing for it
	r3 := row("r3", 3, storage.ResReleased, 20, 60_000, 30, "u4")
	r3.Holdings = []string{"u4", "u5"}
	dups := CheckJournal([]JournalRow{r1, r2, r3}, 5*time.Millisecond)
	if len(dups) != 2 || !strings.Contains(dups[0].A, "r2") || !strings.Contains(dups[1].A, "r3") {
		t.Fatalf("CheckJournal = %v, want r2 and r3 flagged", dups)
	}
}

func TestCheckJournalFindsAnOverlapThroughTheHoldings(t *testing.T) {
	r1 := row("r1", 1, storage.ResHeld, 0, 60_000, 0, "u1")
	r1.Holdings = []string{"u1", "u2"}
	r2 := row("r2", 2, storage.ResHeld, 10, 60_000, 10, "u2")
	r2.Holdings = []string{"u2"}
	dups := CheckJournal([]JournalRow{r1, r2}, 5*time.Millisecond)
	var overlap bool
	for _, d := range dups {
		if d.Hash == "u2" && strings.Contains(d.A, "r1") && strings.Contains(d.B, "r2") {
			overlap = true
		}
	}
	if len(dups) != 2 || !overlap {
		t.Fatalf("CheckJournal = %v, want r1's mismatch and r1 and r2 on u2", dups)
	}
}
