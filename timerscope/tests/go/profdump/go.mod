module timerscope.test/profdump

go 1.19
