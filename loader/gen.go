package loader

//go:generate go tool bpf2go -cc clang-14 -target bpfel -go-package loader -type event -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" tc ../bpf/tc.c
//go:generate go tool bpf2go -cc clang-14 -target bpfel -go-package loader -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" xdp ../bpf/xdp.c
