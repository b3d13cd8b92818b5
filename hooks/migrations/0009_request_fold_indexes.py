# Issue 18: fewer index entries per applied request. Folding rewrites each request row once
# (seq, outcome, ...); the new row version gets an entry in every index whose condition it
# meets. The hook's own foreign-key index repeated what every other index of the table starts
# with; duplicate_of's is now partial (duplicates only). The log by outcome stays whole
# (hooks/models.py says why).
#
# The foreign-key indexes are dropped by name rather than by AlterField, which on PostgreSQL
# would also drop and re-add (and so re-validate over the whole table) both foreign keys.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('hooks', '0008_replayoutcome_indexes'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='request',
                    name='duplicate_of',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='hooks.request'),
                ),
                migrations.AlterField(
                    model_name='request',
                    name='hook',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='requests', to='hooks.hook'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "hooks_request_hook_id_4b4ee076"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "hooks_request_hook_id_4b4ee076" ON "hooks_request" ("hook_id")',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "hooks_request_duplicate_of_id_f6e0ca09"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "hooks_request_duplicate_of_id_f6e0ca09" ON "hooks_request" ("duplicate_of_id")',
                ),
            ],
        ),
        migrations.AddIndex(
            model_name='request',
            index=models.Index(condition=models.Q(('duplicate_of__isnull', False)), fields=['duplicate_of'], name='hooks_request_duplicate_of'),
        ),
    ]
