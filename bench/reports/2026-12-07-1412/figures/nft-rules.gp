set terminal pngcairo size 900,520 font ',10' noenhanced
set output '/work/main/build-release/bench-report/figures/nft-rules.png'
set grid
set key bottom right
set logscale xy
set key top left
set title 'Ruleset install per cell (median)'
set xlabel 'egress targets (rules)'
set ylabel 'milliseconds'
plot '/work/main/build-release/bench-report/figures/nft-rules.dat' using 1:2 with linespoints lw 2 title 'libnftnl batch (reactor)', '' using 1:3 with linespoints lw 2 title 'nft -f (peer)'
