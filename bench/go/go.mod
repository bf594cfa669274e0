module corun.bench/goPeer

go 1.19
