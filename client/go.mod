module github.com/bufferd/bufferd/client

go 1.26.8

require github.com/cenkalti/backoff/v5 v5.0.3
