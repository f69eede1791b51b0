"""Prints the validation accuracy (%) of each epoch in the stats logs of
the bucketing paper's code (outputs/.../stats), one line per log."""
import sys, ast
for path in sys.argv[1:]:
    vals = []
    for line in open(path):
        d = ast.literal_eval(line)
        if d.get('_meta', {}).get('type') == 'validation':
            vals.append('%.1f' % d['top1'])
    print(path.split('/')[-2], ' '.join(vals))
