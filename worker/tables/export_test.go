package tables

// WithBootID makes the store see id as the host's boot id (tests simulate a
// host restart with it).
func WithBootID(id string) StoreOption {
	return func(o *storeOptions) { o.bootID = func() string { return id } }
}
