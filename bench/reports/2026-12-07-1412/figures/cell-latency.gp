set terminal pngcairo size 900,520 font ',10' noenhanced
set output '/work/main/build-release/bench-report/figures/cell-latency.png'
set grid
set key bottom right
set title "One cell in a running reactor vs the floor (cell_bench)"
set xlabel 'milliseconds'
set ylabel 'fraction of runs at or below'
set yrange [0:1]
plot '/work/main/build-release/bench-report/figures/cell-latency.0.dat' using 1:2 with steps lw 2 title 'floor (n=500)', '/work/main/build-release/bench-report/figures/cell-latency.1.dat' using 1:2 with steps lw 2 title 'reactor (n=500)'
