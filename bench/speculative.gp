# results/speculative_oracle.png from results/speculative_oracle.csv (bench/run_speculative.sh):
# measured decode speed-up of speculative decoding over plain greedy against the acceptance rate,
# per draft length N (the header is row 0, hence every 4::N), next to the ideal (1 - P^(N+1)) / (1 - P) tokens per verify step (a verify
# call costing one decode step, drafting costing nothing).  Rows are P-major, N = 1..4 inner.
set terminal pngcairo size 900,560 noenhanced
set output 'results/speculative_oracle.png'
set datafile separator ','
set title 'Speculative decoding, oracle drafts: Qwen3.5-0.8B shape, BF16, 2 threads (results/speculative_oracle.csv)'
set xlabel 'acceptance rate P (each drafted token right with probability P)'
set ylabel 'decode speed-up over plain greedy'
set key top left
set grid
set xrange [0:1]
ideal(P, N) = P < 1 ? (1 - P**(N + 1)) / (1 - P) : N + 1
plot for [N=1:4] 'results/speculative_oracle.csv' every 4::N using 1:3 with linespoints lc N pt 7 lw 2 \
         title sprintf('measured, N = %d', N), \
     for [N=1:4] ideal(x, N) with lines lc N dt 2 title sprintf('ideal, N = %d', N), \
     1 with lines lc rgb 'gray' notitle
