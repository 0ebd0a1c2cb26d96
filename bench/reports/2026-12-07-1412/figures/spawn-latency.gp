set terminal pngcairo size 900,520 font ',10' noenhanced
set output '/work/main/build-release/bench-report/figures/spawn-latency.png'
set grid
set key bottom right
set logscale x
set title "One isolated /bin/true, end to end (spawn_bench)"
set xlabel 'milliseconds'
set ylabel 'fraction of runs at or below'
set yrange [0:1]
plot '/work/main/build-release/bench-report/figures/spawn-latency.0.dat' using 1:2 with steps lw 2 title 'floor (n=500)', '/work/main/build-release/bench-report/figures/spawn-latency.1.dat' using 1:2 with steps lw 2 title 'reactor (n=500)', '/work/main/build-release/bench-report/figures/spawn-latency.2.dat' using 1:2 with steps lw 2 title 'bwrap (n=500)', '/work/main/build-release/bench-report/figures/spawn-latency.3.dat' using 1:2 with steps lw 2 title 'pooled (n=500)', '/work/main/build-release/bench-report/figures/spawn-latency.4.dat' using 1:2 with steps lw 2 title 'dcold (n=500)'
