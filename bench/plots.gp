# make plots: the delta-rule figures in results/ from the CSV files that
# bench/run_deltarule.sh writes.  Columns: see bench/bench_report.c.
set datafile separator ","
set terminal pngcairo size 900,600 noenhanced font ",11"
set key outside right top
set grid
impls = "recurrent recurrent-pairs chunked chunked-blocked neumann neumann-dense"
warm = "results/deltarule_warm.csv"
errs = "results/deltarule_error_vs_T.csv"

# 1. time per token against T, 2 threads
set output "results/deltarule_time_per_token.png"
set title "Gated delta rule, Qwen3.5-0.8B shape (16 heads, 128x128 state), B=1, 2 threads"
set logscale xy
set xlabel "sequence length T (tokens)"
set ylabel "median time per token (us)"
# rows of one implementation at 2 threads, so each line is drawn unbroken
rows(f, im) = sprintf("< awk -F, '$5 == \"%s\" && $8 == 2' %s", im, f)
plot for [im in impls] rows(warm, im) using 7:(1e6 * $9 / $7) with linespoints lw 2 title im

# 2. roofline: useful GFLOP/s (recurrent-form flops) against arithmetic
#    intensity, under the calibrated FMA peak and memory-bandwidth roof
set output "results/deltarule_roofline.png"
set title "Roofline, 2 threads (roofs from results/machine.json via calibrate)"
set xlabel "arithmetic intensity (useful flops / byte)"
set ylabel "GFLOP/s"
stats warm using ($8 == 2 ? $23 : NaN) name "PEAK" nooutput
stats warm using ($8 == 2 ? $24 : NaN) name "BW" nooutput
set xrange [0.1:200]
set yrange [1:400]
roof(x) = (BW_max * x < PEAK_max) ? BW_max * x : PEAK_max
plot roof(x) with lines lw 3 lc rgb "black" title sprintf("roof: %.0f GFLOP/s, %.0f GB/s", PEAK_max, BW_max), \
     for [im in impls] rows(warm, im) using 17:15 with points pt 7 ps 1.5 title im

# 3. error against T (normwise, against the double reference)
set output "results/deltarule_error_vs_T.png"
set title "Normwise error vs the double reference, Dk=Dv=128"
set xlabel "sequence length T"
set ylabel "||x - ref|| / ||ref||"
set autoscale
set yrange [1e-8:10]
set format y "%.0e"
set multiplot layout 1,2
set title "random keys"
set key inside top left
erows(im, regime) = sprintf("< awk -F, '$1 == \"%s\" && $3 == \"%s\"' %s", im, regime, errs)
plot for [im in impls] erows(im, "random") using 2:4 with linespoints lw 2 title im
set title "correlated keys (cosine ~0.9)"
plot for [im in impls] erows(im, "correlated-keys") using 2:4 with linespoints lw 2 title im
unset multiplot

# 4. MoE block throughput against T (bench/run_moe.sh), bf16 and fp32 weights
moe = "results/moe_35b.csv"
if (system("test -f " . moe . " && echo 1 || echo 0") + 0) {
    set output "results/moe_tokens_per_s.png"
    set title "Qwen3.5-35B-A3B MoE block (256 experts, top-8, shared expert), 2 threads"
    set logscale xy
    set autoscale
    set format y "%g"
    set key outside right top
    set xlabel "tokens in the batch T"
    set ylabel "tokens/s (median)"
    mrows(im, dt) = sprintf("< awk -F, '$5 == \"%s\" && $25 == \"%s\"' %s", im, dt, moe)
    plot for [im in "per_token grouped blockwise"] mrows(im, "bf16") using 7:14 with linespoints lw 2 title im." bf16", \
         for [im in "per_token grouped blockwise"] mrows(im, "f32") using 7:14 with linespoints lw 2 dt 2 title im." f32"
}

# 5. Whole-model decode (bench/run_model.sh): time per output token against
#    the time to read the step's weights at the calibrated bandwidth
if (system("ls results/model_*.csv >/dev/null 2>&1 && echo 1 || echo 0") + 0) {
    set output "results/model_decode.png"
    set title "Qwen3.5 decode, random checkpoints: TPOT (median, min-max) vs weight-read bound"
    unset logscale
    set autoscale
    set yrange [0:*]
    set format y "%g"
    set key inside top left
    set xlabel ""
    set ylabel "ms per token"
    set xtics rotate by -30 noenhanced
    set style fill solid 0.5
    set boxwidth 0.6
    # label, median, min, max, bound (= median * pct_bw / 100), all in ms
    mdec = "< for f in results/model_*.csv; do awk -F, -v m=$(basename $f .csv | sed s/model_//) " . \
           "'$5 == \"decode\" {printf \"%s_T%s_%sthr %g %g %g %g\\n\", m, $7, $8, 1e3*$9, 1e3*$10, 1e3*$11, 1e3*$9*$19/100}' $f; done"
    set datafile separator whitespace
    plot mdec using 0:2:xtic(1) with boxes title "TPOT median", \
         mdec using 0:2:3:4 with yerrorbars lc rgb "black" pt 0 title "min-max", \
         mdec using 0:5 with points pt 5 ps 1.5 lc rgb "red" title "bytes / calibrated bandwidth"
    set datafile separator ","
}
