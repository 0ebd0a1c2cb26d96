set terminal pngcairo size 900,520 font ',10' noenhanced
set output '/work/main/build-release/bench-report/figures/throughput-concurrency.png'
set grid
set key bottom right
set datafile missing '?'
set logscale x 2
set key top left
set yrange [0:*]
set title 'Throughput against concurrency (300 /bin/true cells)'
set xlabel 'cells at once (max_concurrent_cells / xargs -P)'
set ylabel 'cells per second'
plot '/work/main/build-release/bench-report/figures/throughput-concurrency.dat' using 1:2 with linespoints lw 2 title 'reactor daemon', '' using 1:3 with linespoints lw 2 title 'bwrap, xargs -P'
