set terminal pngcairo size 900,520 font ',10' noenhanced
set output '/work/main/build-release/bench-report/figures/gvisor-latency.png'
set grid
set key bottom right
set logscale x
set title "/bin/true: native cell, gVisor cell, runsc (gvisor_bench)"
set xlabel 'milliseconds'
set ylabel 'fraction of runs at or below'
set yrange [0:1]
plot '/work/main/build-release/bench-report/figures/gvisor-latency.0.dat' using 1:2 with steps lw 2 title 'native (n=20)', '/work/main/build-release/bench-report/figures/gvisor-latency.1.dat' using 1:2 with steps lw 2 title 'gvisor (n=20)', '/work/main/build-release/bench-report/figures/gvisor-latency.2.dat' using 1:2 with steps lw 2 title 'runsc (n=20)', '/work/main/build-release/bench-report/figures/gvisor-latency.3.dat' using 1:2 with steps lw 2 title 'runsc+cg (n=20)'
