set terminal pngcairo size 900,520 font ',10' noenhanced
set output '/work/main/build-release/bench-report/figures/dns-latency.png'
set grid
set key bottom right
set logscale x
set title "One DNS query: straight to dnsmasq vs through a cell's proxy"
set xlabel 'microseconds'
set ylabel 'fraction of runs at or below'
set yrange [0:1]
plot '/work/main/build-release/bench-report/figures/dns-latency.0.dat' using 1:2 with steps lw 2 title 'direct (n=2000)', '/work/main/build-release/bench-report/figures/dns-latency.1.dat' using 1:2 with steps lw 2 title 'proxy (n=2000)'
