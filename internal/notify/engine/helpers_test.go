package engine

// common returns a valid Common for a test notifier of service typ.
func common(typ string) Common {
	c := Defaults(typ, ServiceDefaults{})
	c.Name = "n1"
	return c
}
