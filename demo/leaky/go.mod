module timerscope.demo/leaky

// A service that has not moved its go.mod past 1.22 keeps the old timer semantics even when
// built by a newer toolchain: unstopped timers and tickers are not garbage collected.
go 1.22
