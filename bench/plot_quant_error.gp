# results/quant_error.png from results/quant_error.txt (bench/run_quant.sh draws it: error_plot turns the table
# into `datafile`, one block per checkpoint of rows "family q8-match% q4-match% q8-max|dlogit| q4-max|dlogit|";
# `names` lists the checkpoints in block order, `outfile` is the PNG).  Per checkpoint, one column of two
# panels: greedy token match against the unquantized reference path (top) and max|dlogit| (bottom, log
# scale), for each weight family quantized alone and for all of them, Q8_0 and Q4_0 side by side.
#   gnuplot -e "datafile='T.dat'; outfile='T.png'; names='a b'" bench/plot_quant_error.gp
N = words(names)
set terminal pngcairo size (300 * N + 120), 760 noenhanced font ",10"
set output outfile
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set xtics rotate by -35 scale 0
unset key # the bars' colours are named in the title: one key per panel would crowd it
set multiplot layout 2, N title "Quantization cost per weight family, Q8_0 (blue, left) and Q4_0 (orange, right): validate --against full.\nOn random checkpoints a lower bound: random weights have no outliers, real ones do." \
    margins 0.06, 0.99, 0.1, 0.9 spacing 0.035, 0.14
do for [i = 1:N] {
    set title word(names, i)
    set ylabel (i == 1 ? "greedy token match (%)" : "")
    unset logscale y
    set yrange [0:105]
    plot datafile index (i - 1) using 2:xtic(1) title "q8_0" lc rgb "#3060c0", \
         '' index (i - 1) using 3 title "q4_0" lc rgb "#d06020"
}
do for [i = 1:N] {
    set title word(names, i)
    set ylabel (i == 1 ? "max |dlogit|" : "")
    set logscale y
    set yrange [1e-3:100]
    set format y "%g"
    plot datafile index (i - 1) using 4:xtic(1) title "q8_0" lc rgb "#3060c0", \
         '' index (i - 1) using 5 title "q4_0" lc rgb "#d06020"
}
unset multiplot
