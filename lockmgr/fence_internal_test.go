package lockmgr

import (
	"reflect"
	"testing"
)

// Every concern of a Manager, also of one Fenced returns, is built on the
// Manager's core, so none keeps another epoch; a concern added to Manager
// but not to compose fails here.
func TestEveryConcernSharesTheManagersCore(t *testing.T) {
	m := New(nil, Options{})
	for _, c := range []struct {
		m     *Manager
		epoch int64
	}{{m, 0}, {m.Fenced(7), 7}, {m.Fenced(7).Fenced(8), 8}} {
		if c.m.epoch != c.epoch {
			t.Errorf("epoch %d, want %d", c.m.epoch, c.epoch)
		}
		if c.m.hub != m.hub {
			t.Errorf("epoch %d: ReserveWait's hub is not shared", c.epoch)
		}
		core := reflect.ValueOf(c.m.core).Pointer()
		v := reflect.ValueOf(c.m).Elem()
		for i := range v.NumField() {
			f, name := v.Field(i), v.Type().Field(i).Name
			if name == "core" {
				continue
			}
			if f.IsNil() {
				t.Fatalf("epoch %d: concern %s is nil", c.epoch, name)
			}
			if f.Elem().FieldByName("core").Pointer() != core {
				t.Errorf("epoch %d: concern %s has a core of its own", c.epoch, name)
			}
		}
	}
}
