set terminal pngcairo size 900,520 font ',10' noenhanced
set output '/work/main/build-release/bench-report/figures/admission-live-cells.png'
set grid
set key bottom right
set key top right
set yrange [0:*]
set title 'Admission rate against live cells (daemon_bench density: sleepers)'
set xlabel 'live cells'
set ylabel 'cells started per second'
plot '/work/main/build-release/bench-report/figures/admission-live-cells.dat' using 1:2 with linespoints lw 2 title 'reactor daemon'
