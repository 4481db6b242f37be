package devstack

// ErrAddrInUse is Start's error for a listen address that is taken.
var ErrAddrInUse = errAddrInUse
